"""Rotary position embeddings (HF "rotate_half" layout), with optional llama3 or linear frequency scaling."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def inv_frequencies(head_dim: int, theta: float, scaling: dict[str, Any] | None = None) -> np.ndarray:
  """[Dh // 2] float32 inverse frequencies; llama3 scaling as in HF `_compute_llama3_parameters`."""
  inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
  if scaling is None:
    return inv_freq.astype(np.float32)
  if scaling.get("rope_type") == "linear":  # HF `_compute_linear_scaling_rope_parameters`
    return (inv_freq / float(scaling["factor"])).astype(np.float32)
  factor = float(scaling["factor"])
  low = float(scaling["low_freq_factor"])
  high = float(scaling["high_freq_factor"])
  old_len = float(scaling["original_max_position_embeddings"])
  low_wavelen = old_len / low
  high_wavelen = old_len / high
  wavelen = 2 * math.pi / inv_freq
  scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  is_medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
  return np.where(is_medium, smoothed, scaled).astype(np.float32)


def rope_cos_sin(positions_BxT: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
  """cos, sin of shape [B, T, Dh] (float32) for integer positions."""
  angles = positions_BxT.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)[None, None, :]
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def rope_by_kind(cfg, positions_BxT: jax.Array) -> tuple[jax.Array, jax.Array]:
  """cos, sin [Lk, B, T, Dh] (float32): row k is the RoPE of layers of kind k (`ModelConfig.layer_kinds`,
  Lk = `cfg.num_layer_kinds()`; Gemma 3's sliding layers have their own base, `cfg.rope_for_kind`)."""
  pairs = [rope_cos_sin(positions_BxT, inv_frequencies(cfg.head_dim, *cfg.rope_for_kind(kind)))
           for kind in range(cfg.num_layer_kinds())]
  return jnp.stack([c for c, _ in pairs]), jnp.stack([s for _, s in pairs])


def apply_rope(x_BxTxHxDh: jax.Array, cos_BxTxDh: jax.Array, sin_BxTxDh: jax.Array) -> jax.Array:
  """Rotate q [B, T, H, Dh] or k [B, T, K, Dh] in float32; returns x's dtype."""
  x = x_BxTxHxDh.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  out = x * cos_BxTxDh[:, :, None, :] + rotated * sin_BxTxDh[:, :, None, :]
  return out.astype(x_BxTxHxDh.dtype)
