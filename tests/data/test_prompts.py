"""One prompt path: the same problem gives byte-identical prompt tokens in training, the in-training
evaluation and `simko_jax.evaluate`, each reached through its own real entry point and config."""

import numpy as np
import pytest

from configs.eval_default import get_config as paper_eval_config
from configs.paper_llama32_3b_simko import get_config as llama_config
from configs.paper_qwen25_math7b_simko import get_config as qwen_config
from simko_jax.data.prompts import (PAPER_PROMPT_SUFFIX, PAPER_SYSTEM_PROMPT, PromptFormat,
                                    format_from_eval_config, format_from_train_config, prompt_ids,
                                    prompt_string)
from simko_jax.data.sources import Example
from simko_jax.eval.harness import evaluate
from simko_jax.sampling import FINISH_STOP
from simko_jax.sampling.text import encode_prompts
from simko_jax.train.evaluation import eval_overrides
from simko_jax.train.setup import prompt_pipeline
from tests.eval.helpers import byte_tokenizer

PROBLEM = "What is $\\frac{1}{2} + \\frac{1}{3}$?"


class RecordingSampler:
  """Stands in for `Sampler`: records the prompt rows it is given, answers `\\boxed{0}` once per row."""

  graphdef = None

  def __init__(self, tokenizer):
    self.rows, self.answer = [], tokenizer.encode("\\boxed{0}") + [tokenizer.eos_id]

  def sample(self, state, tokens, mask, key, *, n, **kwargs):
    del state, key, kwargs
    self.rows += [tuple(int(t) for t, m in zip(row, keep) if m) for row, keep in zip(tokens, mask)]
    rows = tokens.shape[0] * n
    return type("Out", (), dict(response_tokens=np.tile(self.answer, (rows, 1)),
                                response_lengths=np.full(rows, len(self.answer)),
                                finish_reason=np.full(rows, FINISH_STOP)))


class ZeroPool:
  def score(self, triples):
    return [0.0] * len(triples)


def train_tokens(cfg, tokenizer):
  cfg.rollout.prompts_per_step, cfg.data.num_epochs, cfg.data.prompt_bucket = 1, 1, 8
  pipeline = prompt_pipeline(cfg, [Example(PROBLEM, "5/6", "math", 0)], tokenizer)
  batch = next(iter(pipeline))
  return tuple(int(t) for t, m in zip(batch["prompt_tokens"][0], batch["prompt_mask"][0]) if m)


def eval_tokens(eval_cfg, tokenizer, tmp_path):
  sampler = RecordingSampler(tokenizer)
  evaluate({}, tokenizer, {"b": [Example(PROBLEM, "5/6", "math", 0)]}, eval_cfg, str(tmp_path),
           sampler=sampler, pool=ZeroPool(), log=lambda _: None)
  assert len(set(sampler.rows)) == 1
  return sampler.rows[0]


@pytest.mark.parametrize("get_config", [qwen_config, llama_config])
def test_same_prompt_tokens_in_training_in_training_eval_and_evaluate(get_config, tmp_path):
  tokenizer = byte_tokenizer()
  cfg = get_config()
  trained = train_tokens(cfg, tokenizer)
  in_training = dict(eval_overrides(cfg), num_samples=1, max_new_tokens=4)
  cli = paper_eval_config()
  cli.num_samples, cli.max_new_tokens, cli.num_workers = 1, 4, 1
  assert eval_tokens(in_training, tokenizer, tmp_path / "a") == trained
  assert eval_tokens(cli, tokenizer, tmp_path / "b") == trained
  assert tuple(encode_prompts(tokenizer, [PROBLEM], fmt=format_from_eval_config(cli))[0][0]) == trained
  text = tokenizer.decode(list(trained))
  assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
  assert text.endswith(PROBLEM + PAPER_PROMPT_SUFFIX + "<|im_end|>\n<|im_start|>assistant\n")


def test_train_config_prompt_fields_reach_the_pipeline():
  tokenizer = byte_tokenizer()
  cfg = qwen_config()
  cfg.data.system_prompt, cfg.data.prompt_suffix, cfg.data.prompt_template = "", " Go.", "plain"
  assert tokenizer.decode(list(train_tokens(cfg, tokenizer))) == PROBLEM + " Go."


def test_qwen_chatml_is_the_authors_string_and_a_chatml_models_own_template():
  """The authors' hard-coded prompt (verl rl_dataset.py, prompt_template_type "qwen"), character for
  character; a real ChatML model template (SmolLM2's, as Qwen2.5's) renders the same text."""
  from simko_jax.models import Tokenizer, smollm2_gguf_path
  authors = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{input}\n"
             "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
             "<|im_start|>assistant\n").replace("{input}", PROBLEM)
  paper = PromptFormat(PAPER_SYSTEM_PROMPT, PAPER_PROMPT_SUFFIX, "qwen_chatml")
  smollm2 = Tokenizer.from_gguf(smollm2_gguf_path())
  assert prompt_string(paper, smollm2, PROBLEM) == authors
  chat = PromptFormat(PAPER_SYSTEM_PROMPT, PAPER_PROMPT_SUFFIX, "chat")
  assert prompt_string(chat, smollm2, PROBLEM) == authors
  assert prompt_ids(chat, smollm2, PROBLEM) == prompt_ids(paper, smollm2, PROBLEM)


def test_formats_from_configs_and_bad_template():
  assert format_from_train_config(llama_config()) == PromptFormat(PAPER_SYSTEM_PROMPT, PAPER_PROMPT_SUFFIX,
                                                                  "chat")
  cli = paper_eval_config()
  assert format_from_eval_config(cli) == format_from_train_config(qwen_config())
  cli.chat = False
  assert format_from_eval_config(cli).template == "plain"
  with pytest.raises(ValueError, match="qwen_chatml"):
    PromptFormat(template="llama")
