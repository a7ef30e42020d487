"""Fused LM-head + token statistics in token chunks, so [tokens, vocab] logits never exist at once.

For a 152k vocabulary and 8k response tokens, the full fp32 logits are 5 GiB and their gradient as much
again. Here the final hidden states are split into chunks of `chunk_size` tokens; each chunk computes
`logits = h @ W`, its statistics (`token_stats_from_logits`) and is wrapped in `jax.checkpoint`, and the
chunks run under `jax.lax.map` (a scan). On the backward pass each chunk's logits are recomputed from the
saved (h chunk, W) and dropped again, so peak memory holds one [chunk_size, vocab] block (plus its
gradient) instead of [tokens, vocab]. Gradients w.r.t. both `hidden` and `unembedding` flow through the
returned `logp`, `topk_logp` (and `entropy` if requested).

Precision, as in mixed-precision trainers: the LM-head matmul runs in `hidden`'s dtype (the
unembedding is cast to it per chunk) and accumulates in float32, and so do its two backward matmuls
(`lm_head_logits`): the float32 logits' cotangent is rounded to `hidden`'s dtype first. Without that
rounding a bfloat16 model's LM-head backward ran as two float32 (TF32 on NVIDIA GPUs) matmuls over a
float32 weight copy, at most half the bfloat16 rate. The unembedding's gradient is summed over chunks
in the unembedding's own dtype (float32 for float32 master weights).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from simko_jax.losses.token_stats import TokenStats, token_stats_from_logits


@jax.custom_vjp
def lm_head_logits(h_SxD: jax.Array, w_DxV: jax.Array) -> jax.Array:
  """float32 logits [S, V] = h @ w.astype(h.dtype), accumulated in float32.

  Backward (also accumulated in float32): the cotangent g [S, V] is rounded to h's dtype, then
  dh = g @ w^T in h's dtype and dw = h^T @ g in w's dtype. For float32 h this is the plain gradient."""
  return jnp.dot(h_SxD, w_DxV.astype(h_SxD.dtype), preferred_element_type=jnp.float32)


def _lm_head_logits_fwd(h_SxD, w_DxV):
  return lm_head_logits(h_SxD, w_DxV), (h_SxD, w_DxV)


def _lm_head_logits_bwd(residuals, g_SxV):
  h_SxD, w_DxV = residuals
  g_SxV = g_SxV.astype(h_SxD.dtype)
  dh_SxD = jnp.dot(g_SxV, w_DxV.astype(h_SxD.dtype).T, preferred_element_type=jnp.float32)
  dw_DxV = jnp.dot(h_SxD.T, g_SxV, preferred_element_type=jnp.float32)
  return dh_SxD.astype(h_SxD.dtype), dw_DxV.astype(w_DxV.dtype)


lm_head_logits.defvjp(_lm_head_logits_fwd, _lm_head_logits_bwd)


def token_stats_from_hidden(
    hidden: jax.Array,
    unembedding: jax.Array,
    targets: jax.Array,
    *,
    num_candidates: int = 5,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    entropy_grad: bool = False,
) -> TokenStats:
  """`token_stats_from_logits(hidden @ unembedding, ...)` computed chunk by chunk.

  Args:
    hidden: [..., D] final hidden states (after the final norm), any float dtype.
    unembedding: [D, V] LM-head matrix (the transposed embedding when tied), any float dtype: it is
      cast to `hidden`'s dtype per chunk (pass float32 master weights as they are, so their gradient
      is summed over the chunks in float32).
    targets: [...] int token ids, same leading shape as `hidden`.
    num_candidates, temperature, entropy_grad: as in `token_stats_from_logits`.
    chunk_size: tokens per chunk (static). Padding tokens added to fill the last chunk are dropped.

  Returns:
    `TokenStats` with leading shape `...`; equal (to float rounding) to the unchunked computation.
  """
  lead_shape = hidden.shape[:-1]
  d_model = hidden.shape[-1]
  h_NxD = hidden.reshape(-1, d_model)
  y_N = targets.reshape(-1).astype(jnp.int32)
  num_tokens = h_NxD.shape[0]
  chunk = max(1, min(int(chunk_size), num_tokens))
  num_chunks = -(-num_tokens // chunk)
  pad = num_chunks * chunk - num_tokens
  if pad:
    h_NxD = jnp.pad(h_NxD, ((0, pad), (0, 0)))
    y_N = jnp.pad(y_N, (0, pad))
  h_CxSxD = h_NxD.reshape(num_chunks, chunk, d_model)
  y_CxS = y_N.reshape(num_chunks, chunk)

  @functools.partial(jax.checkpoint, prevent_cse=False)
  def one_chunk(h_SxD, y_S):
    logits_SxV = lm_head_logits(h_SxD, unembedding)
    return token_stats_from_logits(
        logits_SxV, y_S, num_candidates=num_candidates, temperature=temperature,
        entropy_grad=entropy_grad)

  stats = jax.lax.map(lambda args: one_chunk(*args), (h_CxSxD, y_CxS))

  def unchunk(x):
    x = x.reshape((num_chunks * chunk,) + x.shape[2:])[:num_tokens]
    return x.reshape(lead_shape + x.shape[1:])

  return TokenStats(*(unchunk(x) for x in stats))
