"""Tiny random Gemma 2 / Gemma 3 (text) HF checkpoints written with transformers (torch, test-only), with
the tiny Gemma-style SentencePiece tokenizer of `sentencepiece_helpers`: the inputs of Gemma parity tests.

Every option the decoder must implement is switched on with a value that changes the numbers: attention
and final-logit soft-capping with small caps, `query_pre_attn_scalar` != head_dim, head_dim != hidden /
heads, grouped-query attention, a sliding window (4) shorter than test sequences, sliding layers mixed
with global ones (Gemma 2 alternating; Gemma 3 every third layer global), Gemma 3's own RoPE base for
local layers and linear RoPE scaling on global ones, QK-norm (Gemma 3), tied embeddings, and non-zero
(1 + w) norm weights.
"""

from __future__ import annotations

import json
import pathlib

from tests.models.sentencepiece_helpers import GEMMA2_TEMPLATE, GEMMA3_TEMPLATE, VOCAB_SIZE, write_gemma_tokenizer

SLIDING_WINDOW = 4

_COMMON = dict(vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=96, num_attention_heads=4,
               num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=32, sliding_window=SLIDING_WINDOW,
               attn_logit_softcapping=5.0, final_logit_softcapping=3.0, max_position_embeddings=256,
               rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
               initializer_range=0.1, bos_token_id=2, eos_token_id=[1, 6], pad_token_id=0)


def tiny_gemma_config(version: int):
  """A transformers `Gemma2Config` (version 2) or `Gemma3TextConfig` (version 3)."""
  import transformers
  if version == 2:
    return transformers.Gemma2Config(**_COMMON, num_hidden_layers=4,
                                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
  if version == 3:
    layer_types = ["sliding_attention" if (i + 1) % 3 else "full_attention" for i in range(6)]
    return transformers.Gemma3TextConfig(
        **_COMMON, num_hidden_layers=6, layer_types=layer_types,
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                         "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}})
  raise ValueError(f"version must be 2 or 3, got {version!r}")


def tiny_gemma_model(version: int, seed: int = 0):
  """A random float32 `Gemma2ForCausalLM` / `Gemma3ForCausalLM` in eval mode, norms perturbed."""
  import torch
  import transformers
  torch.manual_seed(seed)
  cls = transformers.Gemma2ForCausalLM if version == 2 else transformers.Gemma3ForCausalLM
  model = cls(tiny_gemma_config(version))
  with torch.no_grad():  # Gemma norms are (1 + w) with w initialised to 0: make w matter
    for name, p in model.named_parameters():
      if "norm" in name:
        p.add_(0.2 * torch.randn_like(p))
  return model.eval().float()


def write_tiny_gemma(directory, version: int, seed: int = 0, model_proto: bytes | None = None) -> pathlib.Path:
  """A HF checkpoint dir: config.json + model.safetensors + generation_config.json (from
  transformers) and tokenizer.model + tokenizer_config.json (Gemma 2 / 3 chat template)."""
  out = pathlib.Path(directory)
  model = tiny_gemma_model(version, seed)
  model.save_pretrained(str(out), safe_serialization=True)
  write_gemma_tokenizer(out, model_proto, template=GEMMA2_TEMPLATE if version == 2 else GEMMA3_TEMPLATE)
  return out


def read_config(directory) -> dict:
  return json.loads((pathlib.Path(directory) / "config.json").read_text())
