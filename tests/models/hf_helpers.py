"""Shared helpers for model tests: tiny transformers (torch) models and left-padded batches."""

from __future__ import annotations

import numpy as np
import torch


def tiny_hf_model(arch: str, seed: int = 0):
  """A random tiny transformers model of `arch` ("llama3" | "qwen2" | "qwen3") in float32."""
  import transformers
  torch.manual_seed(seed)
  common = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.1)
  if arch == "llama3":
    cfg = transformers.LlamaConfig(
        **common, head_dim=16, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8})
    model = transformers.LlamaForCausalLM(cfg)
  elif arch == "qwen2":
    cfg = transformers.Qwen2Config(**common, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = transformers.Qwen2ForCausalLM(cfg)
  elif arch == "qwen3":
    cfg = transformers.Qwen3Config(**common, head_dim=24, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                   rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    model = transformers.Qwen3ForCausalLM(cfg)
  else:
    raise ValueError(arch)
  with torch.no_grad():  # non-trivial norms and biases so the test sees them
    for name, p in model.named_parameters():
      if "norm" in name or name.endswith("bias"):
        p.add_(0.2 * torch.randn_like(p))
  return model.eval().float()


def left_padded_batch(vocab: int, lengths=(11, 7, 3), total: int = 11, seed: int = 0):
  """(tokens [B, T] int32, mask [B, T] int32) with left padding (pad id 0)."""
  rng = np.random.default_rng(seed)
  b = len(lengths)
  tokens = np.zeros((b, total), np.int32)
  mask = np.zeros((b, total), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, total - n:] = rng.integers(3, vocab, n)
    mask[i, total - n:] = 1
  return tokens, mask


def torch_logits(model, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """transformers logits with explicit positions cumsum(mask) - 1 (as ours)."""
  ids = torch.tensor(tokens, dtype=torch.long)
  m = torch.tensor(mask, dtype=torch.long)
  pos = (m.cumsum(-1) - 1).clamp(min=0)
  with torch.no_grad():
    return model(input_ids=ids, attention_mask=m, position_ids=pos).logits.float().numpy()
