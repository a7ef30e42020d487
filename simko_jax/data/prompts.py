"""The one prompt builder: problem text -> prompt token ids, shared by training and every evaluation.

Training (`data.pipeline`), the in-training evaluation (`train.evaluation`) and `simko_jax.evaluate`
(`eval.generation`, `eval.concentration`) all call `prompt_ids(fmt, tokenizer, problem)` with a
`PromptFormat` built from the same three config fields, so the same problem gives byte-identical prompt
tokens in all of them (tests/data/test_prompts.py proves it):

  training config            eval config            meaning
  data.system_prompt         system_prompt          system message ("" = none)
  data.prompt_suffix         prompt_suffix          appended to the problem text (the user message)
  data.prompt_template       prompt_template        "chat" | "plain" | "qwen_chatml"

Templates:
  chat         the tokenizer's own chat template: [system?, user] + generation prompt (default).
  plain        the user message as raw text (base models without a template).
  qwen_chatml  the SimKO authors' hard-coded ChatML string (verl `rl_dataset.py`, prompt_template_type
               "qwen"), whatever the model. For Qwen2.5-Math with a system message it is identical to
               "chat"; the authors also fed it to Llama-3.2-3B-Instruct, whose template is different
               (see docs/paper_fidelity.md). Offered to reproduce that run exactly; not the default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

PROMPT_TEMPLATES = ("chat", "plain", "qwen_chatml")

# The SimKO authors' prompt (verl rl_dataset.py), used by the paper configs for training and evaluation.
PAPER_SYSTEM_PROMPT = "You are a helpful assistant."
PAPER_PROMPT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."

_QWEN_CHATML = ("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                "<|im_start|>assistant\n")
_QWEN_CHATML_NO_SYSTEM = "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


class PromptTokenizer(Protocol):
  def encode(self, text: str) -> list[int]: ...
  def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> Any: ...


@dataclasses.dataclass(frozen=True)
class PromptFormat:
  """How a problem becomes a prompt. Invariant: template in PROMPT_TEMPLATES."""
  system_prompt: str = ""
  suffix: str = ""
  template: str = "chat"

  def __post_init__(self):
    if self.template not in PROMPT_TEMPLATES:
      raise ValueError(f"prompt template {self.template!r} is not one of {list(PROMPT_TEMPLATES)}")


def format_from_train_config(cfg) -> PromptFormat:
  """The prompt format of a training config (`cfg.data.*`)."""
  return PromptFormat(cfg.data.system_prompt, cfg.data.prompt_suffix, cfg.data.prompt_template)


def format_from_eval_config(cfg) -> PromptFormat:
  """The prompt format of an evaluation config; its legacy `chat=False` means template "plain"."""
  template = cfg.get("prompt_template", "chat") if cfg.get("chat", True) else "plain"
  return PromptFormat(cfg.get("system_prompt", "") or "", cfg.get("prompt_suffix", "") or "", template)


def prompt_string(fmt: PromptFormat, tokenizer: PromptTokenizer, problem: str) -> Any:
  """The prompt before tokenisation: a str (or, from an HF-style template, already the ids)."""
  user = problem + fmt.suffix
  if fmt.template == "plain":
    return user
  if fmt.template == "qwen_chatml":
    if fmt.system_prompt:
      return _QWEN_CHATML.format(system=fmt.system_prompt, user=user)
    return _QWEN_CHATML_NO_SYSTEM.format(user=user)
  messages = ([{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else [])
  messages.append({"role": "user", "content": user})
  return tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def prompt_ids(fmt: PromptFormat, tokenizer: PromptTokenizer, problem: str) -> list[int]:
  """Prompt token ids (python ints, no truncation) of `problem` under `fmt`."""
  text = prompt_string(fmt, tokenizer, problem)
  return [int(t) for t in (tokenizer.encode(text) if isinstance(text, str) else text)]
