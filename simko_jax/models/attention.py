"""Grouped-query attention over a (possibly cached) key/value sequence.

Masking convention shared by the full forward and KV-cache decoding: the T queries sit at key slots
`q_slot[t] = cache_index + t`; query t may attend key slot s iff `s <= q_slot[t]` and `kv_mask[b, s]`.
For the plain forward, cache_index = 0 and kv_mask = attention_mask (so: causal + padding). A query row
with no visible key (a left-padding position) gets a uniform distribution instead of NaN; its output
is meaningless and must be ignored by callers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.parallel import constrain

_NEG = -0.7 * float(jnp.finfo(jnp.float32).max)


def attention_mask(t: int, s: int, cache_index: jax.Array, kv_mask_BxS: jax.Array) -> jax.Array:
  """Boolean [B, T, S] mask: slot s visible to query t iff s <= cache_index + t and kv_mask[b, s]."""
  q_slot_T = jnp.asarray(cache_index, jnp.int32) + jnp.arange(t, dtype=jnp.int32)
  causal_TxS = jnp.arange(s, dtype=jnp.int32)[None, :] <= q_slot_T[:, None]
  return causal_TxS[None, :, :] & (kv_mask_BxS[:, None, :] > 0)


def gqa_attention(q_BxTxNxH: jax.Array, k_BxSxKxH: jax.Array, v_BxSxKxH: jax.Array,
                  mask_BxTxS: jax.Array, impl: str = "xla") -> jax.Array:
  """Softmax(q k^T / sqrt(H) + mask) v with N query heads sharing K kv heads (head n uses n // (N/K)).

  impl "xla": einsum with float32 scores/softmax; "jax"/"cudnn": `jax.nn.dot_product_attention` with
  implementation None/"cudnn" (cudnn needs fp16/bf16 inputs on GPU). Returns [B, T, N, H] in q's dtype.
  """
  b, t, n, h = q_BxTxNxH.shape
  kvh = k_BxSxKxH.shape[2]
  if impl in ("jax", "cudnn"):
    return jax.nn.dot_product_attention(
        q_BxTxNxH, k_BxSxKxH.astype(q_BxTxNxH.dtype), v_BxSxKxH.astype(q_BxTxNxH.dtype),
        mask=mask_BxTxS[:, None, :, :], implementation=None if impl == "jax" else "cudnn")
  # kv-major: every contraction is a plain batched [G*T, H] x [H, S] / [G*T, S] x [S, H] matmul per
  # (row, kv head); the einsums straight over the [B, T, K, H] layouts were slower on XLA:CPU
  # (SmolLM2 shape, B=32, 2 cores: T=63 forward 8 -> 4 ms per layer, T=192 forward+backward 222 -> 175).
  g = n // kvh
  q = jnp.transpose(q_BxTxNxH.reshape(b, t, kvh, g, h), (0, 2, 3, 1, 4)).reshape(b, kvh, g * t, h)
  k = jnp.transpose(k_BxSxKxH.astype(q.dtype), (0, 2, 3, 1))  # [B, K, H, S]
  v = jnp.swapaxes(v_BxSxKxH, 1, 2)  # [B, K, S, H]
  scores = jnp.einsum("bkqh,bkhs->bkqs", q, k, preferred_element_type=jnp.float32)
  scores = scores.reshape(b, kvh, g, t, -1) * (1.0 / float(h) ** 0.5)
  scores = jnp.where(mask_BxTxS[:, None, None, :, :], scores, _NEG)
  probs = jax.nn.softmax(scores, axis=-1).reshape(b, kvh, g * t, -1)
  out = jnp.einsum("bkqs,bksh->bkqh", probs.astype(v.dtype), v, preferred_element_type=jnp.float32)
  out = jnp.transpose(out.reshape(b, kvh, g, t, h), (0, 3, 1, 2, 4))
  out = out.reshape(b, t, n, h).astype(q_BxTxNxH.dtype)
  return constrain(out, ("batch", "length", "heads", "head_dim"))
