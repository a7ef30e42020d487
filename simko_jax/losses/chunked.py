"""Fused LM-head + token statistics in token chunks, so [tokens, vocab] logits never exist at once.

For a 152k vocabulary and 8k response tokens, the full fp32 logits are 5 GiB and their gradient as much
again. Here the final hidden states are split into chunks of about `chunk_size` tokens; each chunk computes
`logits = h @ W`, its statistics (`token_stats_from_logits`) and is wrapped in `jax.checkpoint`, and the
chunks run under `jax.lax.map` (a scan). On the backward pass each chunk's logits are recomputed from the
saved (h chunk, W) and dropped again, so peak memory holds one [chunk_size, vocab] block (plus its
gradient) instead of [tokens, vocab]. Gradients w.r.t. both `hidden` and `unembedding` flow through the
returned `logp`, `topk_logp` (and `entropy` if requested).

Sharding: under a mesh (`jax.set_mesh`) whose "batch" axes (data x fsdp) split the rows, the whole
computation runs per device under `jax.shard_map` over those axes: each device takes its own rows, the
unembedding is gathered once (it is usually split over fsdp), the chunk scan runs locally (top_k
included: XLA:CPU's partitioner all-gathers a row-sharded top_k), and the unembedding's gradient is
summed over the chunks locally and reduced over devices once. `chunk_size` therefore counts one
device's tokens. (Cutting the flattened global tokens into chunks instead split chunks across row
shards: XLA replicated them, or all-reduced [chunk, V] logits / [D, V] gradients per chunk.)
Chunk layout (`to_chunks`): [B rows, T tokens, D] is cut along the token axis only into `num_chunks`
chunks of `chunk_len` tokens (Tc), chunk c being tokens [c*Tc, (c+1)*Tc) of every row.

Precision, as in mixed-precision trainers: the LM-head matmul runs in `hidden`'s dtype (the
unembedding is cast to it per chunk) and accumulates in float32, and so do its two backward matmuls
(`lm_head_logits`): the float32 logits' cotangent is rounded to `hidden`'s dtype first. Without that
rounding a bfloat16 model's LM-head backward ran as two float32 (TF32 on NVIDIA GPUs) matmuls over a
float32 weight copy, at most half the bfloat16 rate. The unembedding's gradient is summed over chunks
in the unembedding's own dtype (float32 for float32 master weights).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from simko_jax.hparams import NUM_RANK_PROBS, LossHParams
from simko_jax.losses.token_stats import TokenStats, token_stats_from_logits
from simko_jax.models.layers import soft_cap
from simko_jax.parallel import logical_to_spec


@jax.custom_vjp
def lm_head_logits(h_TxD: jax.Array, w_DxV: jax.Array) -> jax.Array:
  """float32 logits [T, V] = h @ w.astype(h.dtype), accumulated in float32.

  Backward (also accumulated in float32): the cotangent g [T, V] is rounded to h's dtype, then
  dh = g @ w^T in h's dtype and dw = h^T @ g in w's dtype. For float32 h this is the plain gradient."""
  return jnp.dot(h_TxD, w_DxV.astype(h_TxD.dtype), preferred_element_type=jnp.float32)


def _lm_head_logits_fwd(h_TxD, w_DxV):
  return lm_head_logits(h_TxD, w_DxV), (h_TxD, w_DxV)


def _lm_head_logits_bwd(residuals, g_TxV):
  h_TxD, w_DxV = residuals
  g_TxV = g_TxV.astype(h_TxD.dtype)
  dh_TxD = jnp.dot(g_TxV, w_DxV.astype(h_TxD.dtype).T, preferred_element_type=jnp.float32)
  dw_DxV = jnp.dot(h_TxD.T, g_TxV, preferred_element_type=jnp.float32)
  return dh_TxD.astype(h_TxD.dtype), dw_DxV.astype(w_DxV.dtype)


lm_head_logits.defvjp(_lm_head_logits_fwd, _lm_head_logits_bwd)


class ChunkLayout(NamedTuple):
  """How [B rows, T tokens] are cut into `num_chunks` chunks of `chunk_len` (Tc) consecutive tokens of
  every row (T padded to num_chunks * Tc)."""
  num_chunks: int
  chunk_len: int
  length: int


def chunk_layout(rows: int, length: int, chunk_size: int) -> ChunkLayout:
  """About `chunk_size` tokens per chunk (rows x Tc), at least one token of every row per chunk."""
  chunk_size = max(1, int(chunk_size))
  num_chunks = min(length, -(-rows * length // chunk_size))
  chunk_len = -(-length // num_chunks)
  return ChunkLayout(-(-length // chunk_len), chunk_len, length)


def to_chunks(x_BxT: jax.Array, layout: ChunkLayout) -> jax.Array:
  """[B, T, ...] -> [num_chunks, B, Tc, ...]: chunk c holds tokens [c*Tc, (c+1)*Tc) of every row
  (zero padded).

  The rows axis stays whole inside each chunk, so a row-sharded input gives row-sharded chunks:
  slicing the scanned (unsharded) chunk axis needs no communication."""
  c, s, t = layout
  pad = c * s - t
  if pad:
    x_BxT = jnp.pad(x_BxT, [(0, 0), (0, pad)] + [(0, 0)] * (x_BxT.ndim - 2))
  n = x_BxT.shape[0]
  x = x_BxT.reshape((n, c, s) + x_BxT.shape[2:])
  return jnp.moveaxis(x, 1, 0)


def from_chunks(x_chunks: jax.Array, layout: ChunkLayout) -> jax.Array:
  """Inverse of `to_chunks`: [num_chunks, B, Tc, ...] -> [B, T, ...] (padding dropped)."""
  c, s, t = layout
  x = jnp.moveaxis(x_chunks, 0, 1)
  return x.reshape((x.shape[0], c * s) + x.shape[3:])[:, :t]


def token_stats_from_hidden(
    hidden: jax.Array,
    unembedding: jax.Array,
    targets: jax.Array,
    *,
    num_candidates: int = NUM_RANK_PROBS,
    temperature: float = LossHParams.temperature,
    chunk_size: int = LossHParams.chunk_size,
    entropy_grad: bool = False,
    logit_softcap: float | None = None,
) -> TokenStats:
  """`token_stats_from_logits(hidden @ unembedding, ...)` computed chunk by chunk.

  Args:
    hidden: [..., D] final hidden states (after the final norm), any float dtype.
    unembedding: [D, V] LM-head matrix (the transposed embedding when tied), any float dtype: it is
      cast to `hidden`'s dtype per chunk (pass float32 master weights as they are, so their gradient
      is summed over the chunks in float32).
    targets: [...] int token ids, same leading shape as `hidden`.
    num_candidates, temperature, entropy_grad: as in `token_stats_from_logits`.
    logit_softcap: the model's final-logit soft-cap (Gemma 2's final_logit_softcapping; None: off),
      applied to each chunk's logits before temperature, as the model applies it.
    chunk_size: about this many tokens per chunk, all of one device's rows together (static; see
      `chunk_layout`). Padding tokens added to fill the last chunk are dropped.

  Returns:
    `TokenStats` with leading shape `...`; equal (to float rounding) to the unchunked computation.
  """
  lead_shape = hidden.shape[:-1]
  d_model = hidden.shape[-1]
  # Rows x tokens: [T, D] is one row; [B, T, D] and deeper keep their last axis as the token axis.
  rows = 1 if hidden.ndim == 2 else int(np.prod(lead_shape[:-1]))
  h_BxTxD = hidden.reshape(rows, lead_shape[-1], d_model)
  y_BxT = targets.reshape(rows, lead_shape[-1]).astype(jnp.int32)
  stats_fn = functools.partial(_chunked_stats, chunk_size=chunk_size, num_candidates=num_candidates,
                               temperature=temperature, entropy_grad=entropy_grad, logit_softcap=logit_softcap)
  row_axes = _row_mesh_axes(rows)
  if row_axes:
    # Per device: its own rows, the whole unembedding (gathered once), dW summed over chunks locally
    # and reduced over the row axes once (the transpose of the replicated in_spec). Other mesh axes
    # ("tensor" on the vocabulary) stay with the compiler.
    rows_spec = P(row_axes)
    local_fn = stats_fn
    # pcast to "varying": each device's dW is its own rows' partial sum (the custom VJP of
    # `lm_head_logits` returns it as such); the transpose of this cast is the one psum.
    stats_fn = jax.shard_map(
        lambda h, w, y: local_fn(h, jax.lax.pcast(w, row_axes, to="varying"), y),
        in_specs=(rows_spec, P(), rows_spec), out_specs=rows_spec, axis_names=frozenset(row_axes))
  stats = stats_fn(h_BxTxD, unembedding, y_BxT)
  return TokenStats(*(x.reshape(lead_shape + x.shape[2:]) for x in stats))


def _row_mesh_axes(rows: int) -> tuple[str, ...]:
  """Mesh axes the rows ("batch") are split over under the mesh set by `jax.set_mesh` (() if none)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is None or mesh.empty or mesh.size == 1:
    return ()
  axes = logical_to_spec(("batch",), mesh, shape=(rows,))[0]
  return () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))


def _chunked_stats(h_BxTxD, w_DxV, y_BxT, *, chunk_size, num_candidates, temperature, entropy_grad,
                   logit_softcap=None):
  """TokenStats [B, T, ...] of (h @ w) in chunks of about `chunk_size` tokens (see `to_chunks`)."""
  rows, length, d_model = h_BxTxD.shape
  layout = chunk_layout(rows, length, chunk_size)

  @functools.partial(jax.checkpoint, prevent_cse=False)
  def one_chunk(h_BxTcxD, y_BxTc):
    b, tc = y_BxTc.shape
    logits = soft_cap(lm_head_logits(h_BxTcxD.reshape(b * tc, d_model), w_DxV), logit_softcap)
    stats = token_stats_from_logits(
        logits, y_BxTc.reshape(b * tc), num_candidates=num_candidates, temperature=temperature,
        entropy_grad=entropy_grad)
    return jax.tree.map(lambda x: x.reshape((b, tc) + x.shape[1:]), stats)

  stats = jax.lax.map(lambda args: one_chunk(*args),
                      (to_chunks(h_BxTxD, layout), to_chunks(y_BxT, layout)))
  return TokenStats(*(from_chunks(x, layout) for x in stats))
