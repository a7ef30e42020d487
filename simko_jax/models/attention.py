"""Grouped-query attention over a (possibly cached) key/value sequence.

Masking convention shared by the full forward and KV-cache decoding: the T queries sit at key slots
`q_slot[t] = cache_index + t`; query t may attend key slot s iff `s <= q_slot[t]` and `kv_mask[b, s]`.
For the plain forward, cache_index = 0 and kv_mask = attention_mask (so: causal + padding). A sliding-
window layer (`window` W) also needs `q_slot[t] - s < W`: slots, not RoPE positions, as transformers'
masks do; the two agree on left-padded rows whose real tokens are contiguous. A query row
with no visible key (a left-padding position) gets a uniform distribution instead of NaN; its output
is meaningless and must be ignored by callers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.models.layers import soft_cap
from simko_jax.parallel import constrain

# The score of a masked (query, key) pair: finite, so a row with no visible key gives a uniform softmax
# instead of NaN, and exp(MASKED_SCORE - real score) underflows to 0.
MASKED_SCORE = -0.7 * float(jnp.finfo(jnp.float32).max)


def attention_mask(t: int, s: int, cache_index: jax.Array, kv_mask_BxS: jax.Array,
                   window: int | None = None) -> jax.Array:
  """Boolean [B, T, S] mask: slot s visible to query t iff s <= cache_index + t and kv_mask[b, s] (and,
  with a sliding `window`, cache_index + t - s < window)."""
  q_slot_T = jnp.asarray(cache_index, jnp.int32) + jnp.arange(t, dtype=jnp.int32)
  offset_TxS = q_slot_T[:, None] - jnp.arange(s, dtype=jnp.int32)[None, :]
  causal_TxS = offset_TxS >= 0
  if window is not None:
    causal_TxS = causal_TxS & (offset_TxS < window)
  return causal_TxS[None, :, :] & (kv_mask_BxS[:, None, :] > 0)


def attention_scale(cfg) -> float:
  """The factor on q.k scores: query_pre_attn_scalar**-0.5 (Gemma) or head_dim**-0.5."""
  return float(cfg.query_pre_attn_scalar or cfg.head_dim) ** -0.5


def gqa_attention(q_BxTxHxDh: jax.Array, k_BxSxKxDh: jax.Array, v_BxSxKxDh: jax.Array,
                  mask_BxTxS: jax.Array, impl: str = "xla", *, scale: float | None = None,
                  softcap: float | None = None) -> jax.Array:
  """Softmax(soft_cap(q k^T * scale) + mask) v with H query heads sharing K kv heads (head h uses h // Q,
  Q = H / K). scale: default 1 / sqrt(Dh) (`attention_scale`); softcap: `layers.soft_cap`'s cap (None:
  off; "xla" only), applied to the scaled scores before the mask, as transformers' Gemma 2 does.

  impl "xla": einsum with float32 scores/softmax; "jax"/"cudnn": `jax.nn.dot_product_attention` with
  implementation None/"cudnn" (cudnn needs fp16/bf16 inputs on GPU). Returns [B, T, H, Dh] in q's dtype.
  """
  b, t, h, dh = q_BxTxHxDh.shape
  k = k_BxSxKxDh.shape[2]
  scale = 1.0 / float(dh) ** 0.5 if scale is None else scale
  if impl in ("jax", "cudnn"):
    if softcap is not None:
      raise ValueError(f"attention impl {impl!r} cannot soft-cap scores; use 'xla'")
    return jax.nn.dot_product_attention(
        q_BxTxHxDh, k_BxSxKxDh.astype(q_BxTxHxDh.dtype), v_BxSxKxDh.astype(q_BxTxHxDh.dtype),
        mask=mask_BxTxS[:, None, :, :], scale=scale, implementation=None if impl == "jax" else "cudnn")
  # kv-major: every contraction is a plain batched [Q*T, Dh] x [Dh, S] / [Q*T, S] x [S, Dh] matmul per
  # (row, kv head); the einsums straight over the [B, T, K, Dh] layouts were slower on XLA:CPU
  # (SmolLM2 shape, B=32, 2 cores: T=63 forward 8 -> 4 ms per layer, T=192 forward+backward 222 -> 175).
  n_q = h // k
  q_BxKxQTxDh = jnp.transpose(q_BxTxHxDh.reshape(b, t, k, n_q, dh), (0, 2, 3, 1, 4)).reshape(b, k, n_q * t, dh)
  k_BxKxDhxS = jnp.transpose(k_BxSxKxDh.astype(q_BxKxQTxDh.dtype), (0, 2, 3, 1))
  v_BxKxSxDh = jnp.swapaxes(v_BxSxKxDh, 1, 2)
  scores = jnp.einsum("bkqd,bkds->bkqs", q_BxKxQTxDh, k_BxKxDhxS, preferred_element_type=jnp.float32)
  scores = soft_cap(scores.reshape(b, k, n_q, t, -1) * scale, softcap)
  scores = jnp.where(mask_BxTxS[:, None, None, :, :], scores, MASKED_SCORE)
  probs = jax.nn.softmax(scores, axis=-1).reshape(b, k, n_q * t, -1)
  out = jnp.einsum("bkqs,bksd->bkqd", probs.astype(v_BxKxSxDh.dtype), v_BxKxSxDh,
                   preferred_element_type=jnp.float32)
  out = jnp.transpose(out.reshape(b, k, n_q, t, dh), (0, 3, 1, 2, 4))
  out = out.reshape(b, t, h, dh).astype(q_BxTxHxDh.dtype)
  return constrain(out, ("batch", "length", "heads", "head_dim"))
