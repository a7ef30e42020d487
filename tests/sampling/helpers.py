"""Shared helpers for sampler tests: tiny models, left-padded prompts, full-forward references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from simko_jax.models import Transformer


def left_padded(vocab: int, lengths, total: int, seed: int = 0, pad: int = 0):
  """(tokens [B, total] int32, mask [B, total] int32), left-padded, ids in [3, vocab)."""
  rng = np.random.default_rng(seed)
  tokens = np.full((len(lengths), total), pad, np.int32)
  mask = np.zeros((len(lengths), total), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, total - n:] = rng.integers(3, vocab, n)
    mask[i, total - n:] = 1
  return tokens, mask


def make_model(cfg, seed: int = 0) -> Transformer:
  return Transformer(cfg, rngs=nnx.Rngs(seed))


def full_forward_fn(model: Transformer):
  """A jitted full (non-cached) forward: (tokens, mask) -> float32 logits [B, T, V]."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def fwd(state, tokens, mask):
    return nnx.merge(graphdef, state)(tokens, attention_mask_BxT=mask)

  return lambda tokens, mask: np.asarray(fwd(state, jnp.asarray(tokens), jnp.asarray(mask)))


def trainer_logprobs(fwd, tokens_BxT, mask_BxT, prompt_len: int, temperature: float) -> np.ndarray:
  """What the trainer recomputes: log_softmax(logits / T) at position t gathered at token t+1, for the
  response columns [prompt_len, T). Returns [B, T - prompt_len]."""
  logits = fwd(tokens_BxT, mask_BxT)[:, prompt_len - 1:-1] / temperature
  logp = np.asarray(jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1))
  return np.take_along_axis(logp, np.asarray(tokens_BxT)[:, prompt_len:, None], axis=-1)[..., 0]
