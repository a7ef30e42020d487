"""The training `Batch` built and cut on device: one iteration's sampled rows never return to the host.

Row layout. Every global array of one iteration's batch is [B] rows in *host-major* order: the B_h rows
of process 0, then those of process 1, ... (B = process_count x B_h; one process: B = B_h). Within a
host the rows follow that host's own order (groups contiguous: row r is response r % G of prompt
r // G). A row set that every host picks the same way (a log-prob chunk, a micro-batch taken with the
step's permutation) is the same local rows on every host, so its global index array is a pure function
of (local rows, B_h, process_count) that every host computes alike (`host_major_rows`); rows that differ
per host (dynamic sampling's chosen groups) come as each host's own share (`parts_rows`).

Everything here is a pure function of device arrays (jitted) or of numpy indices (host), so a single
compiled RL step (issue 25) can call the device half inside its own program:
  * `assemble_batch`: sampler outputs (+ the rows chosen) + rewards -> `Batch` (masks, positions,
    advantages) on the mesh;
  * `take_rows`: a jitted gather of batch rows ([B'] or [M, mb] index arrays);
  * `fill_logprobs`: old / reference log-probs over row chunks of one compiled shape.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from simko_jax.losses import grpo_advantages, signed_advantages
from simko_jax.sampling.sampler import FINISH_LENGTH
from simko_jax.train.distributed import host_rows_to_global
from simko_jax.train.step import Batch, batch_sharding


# ----------------------------------------------------------------------------------- host: indices
def host_major_rows(local_rows_MxJ: np.ndarray, rows_per_host: int, process_count: int) -> np.ndarray:
  """Global indices of the same local rows taken on every host: [M, J] -> int32 [M, process_count * J],
  host h's rows in columns h*J .. h*J+J-1 (the layout `jax.make_array_from_process_local_data` gives
  per-host [M, J] blocks)."""
  local = np.asarray(local_rows_MxJ, np.int64)
  offsets = np.arange(process_count) * rows_per_host
  return (offsets[None, :, None] + local[:, None, :]).reshape(local.shape[0], -1).astype(np.int32)


def parts_rows(local_rows: np.ndarray, part_sizes: Sequence[int], process_index: int,
               process_count: int) -> np.ndarray:
  """Rows of this host's concatenated parts -> rows of the device concatenation of the parts' global
  arrays, int32 [len(local_rows)].

  Part k (one sampler call) holds b_k rows per host and is a global array [process_count x b_k] in
  host-major order, so this host's local row j of part k is global row
  sum_{k' < k} process_count x b_k' + process_index x b_k + j of the concatenated parts.
  """
  sizes = np.asarray(part_sizes, np.int64)
  local_starts = np.concatenate([[0], np.cumsum(sizes)])
  global_starts = local_starts * process_count
  rows = np.asarray(local_rows, np.int64)
  part = np.searchsorted(local_starts, rows, side="right") - 1
  within = rows - local_starts[part]
  return (global_starts[part] + process_index * sizes[part] + within).astype(np.int32)


def put_replicated(x: np.ndarray, mesh) -> jax.Array:
  """A host array every process holds equally -> one replicated global array (an explicit transfer)."""
  return host_rows_to_global(np.asarray(x), NamedSharding(mesh, PartitionSpec()))


# ----------------------------------------------------------------------------------- device: batch
def advantages_of(rewards_B: jax.Array, group_size: int, advantage: str, adv_eps: float) -> jax.Array:
  """Per-response advantages float32 [B] from rewards [B] (groups of `group_size` contiguous rows)."""
  rewards_PxG = rewards_B.reshape(-1, group_size)
  if advantage == "signed":
    return signed_advantages(rewards_PxG).reshape(-1)
  return grpo_advantages(rewards_PxG, normalize_std=advantage == "grpo", eps=adv_eps).reshape(-1)


def positions_of(attention_mask_BxT: jax.Array) -> jax.Array:
  """Model positions cumsum(mask) - 1 clipped at 0, int32 [B, T] (the sampler's convention)."""
  return jnp.maximum(jnp.cumsum(attention_mask_BxT, axis=-1) - 1, 0).astype(jnp.int32)


def _concat_parts(parts: Sequence[Any]) -> tuple[jax.Array, ...]:
  """(tokens [B, Tp+R], prompt_mask [B, Tp], response_mask [B, R], finish_reason [B]) of the parts
  concatenated; prompts of different widths are left-padded to the widest (mask 0: invisible)."""
  width = max(p.prompt_mask.shape[-1] for p in parts)
  def pad(x, by):
    return jnp.pad(x, ((0, 0), (by, 0))) if by else x
  tokens, prompt_mask, response_mask, finish = [], [], [], []
  for p in parts:
    by = width - p.prompt_mask.shape[-1]
    tokens.append(pad(p.tokens, by))
    prompt_mask.append(pad(p.prompt_mask, by))
    response_mask.append(p.response_mask)
    finish.append(p.finish_reason)
  return tuple(jnp.concatenate(xs) if len(xs) > 1 else xs[0]
               for xs in (tokens, prompt_mask, response_mask, finish))


@functools.partial(jax.jit, static_argnames=("group_size", "advantage", "adv_eps", "overlong_mask",
                                             "sharding"))
def assemble_batch(parts: tuple, rows_B: jax.Array | None, rewards_B: jax.Array, *, group_size: int,
                   advantage: str, adv_eps: float, overlong_mask: bool,
                   sharding: NamedSharding) -> Batch:
  """The `Batch` of one iteration from its sampler outputs, all on device.

  parts: `SampleOutput`s (global arrays, one per sampler call) whose tokens, prompt_mask,
    response_mask and finish_reason are read. rows_B: int32 [B] rows of the parts' concatenation to
    keep, in batch order (None: all, as they are). rewards_B: float32 [B], in batch order.
  Returns a `Batch` [B, ...] sharded by `sharding` with loss_mask = response_mask (rows that hit the
  length limit zeroed under `overlong_mask`), old/ref log-probs zero (`fill_logprobs` fills them).
  """
  tokens, prompt_mask, response_mask, finish = _concat_parts(parts)
  if rows_B is not None:
    tokens, prompt_mask, response_mask, finish = (
        x[rows_B] for x in (tokens, prompt_mask, response_mask, finish))
  attention_mask = jnp.concatenate([prompt_mask, response_mask], axis=-1).astype(jnp.int32)
  loss_mask = response_mask.astype(jnp.float32)
  if overlong_mask:
    loss_mask = loss_mask * (finish != FINISH_LENGTH)[:, None]
  zeros = jnp.zeros(loss_mask.shape, jnp.float32)
  # Advantages from replicated rewards: every device reduces whole groups itself, so the values do not
  # depend on the mesh (a group mean/std split over devices would round differently).
  replicated = lambda x: jax.lax.with_sharding_constraint(x, NamedSharding(sharding.mesh, PartitionSpec()))
  advantages_B = replicated(advantages_of(replicated(rewards_B), group_size, advantage, adv_eps))
  batch = Batch(tokens=tokens.astype(jnp.int32), attention_mask=attention_mask,
                positions=positions_of(attention_mask), loss_mask=loss_mask, old_logprobs=zeros,
                ref_logprobs=zeros, advantages=advantages_B)
  return jax.lax.with_sharding_constraint(batch, sharding)


@functools.partial(jax.jit, static_argnames=("sharding",))
def take_rows(tree: Any, rows: jax.Array, *, sharding: NamedSharding) -> Any:
  """Rows `rows` (int32 [B'] or [M, mb]) of every leaf [B, ...] -> leaves [B', ...] or [M, mb, ...]."""
  return jax.lax.with_sharding_constraint(jax.tree.map(lambda x: x[rows], tree), sharding)


@jax.jit
def batch_summary(batch: Batch) -> dict[str, jax.Array]:
  """Scalars of the whole (global) batch for the iteration's metrics."""
  return {"advantage_abs_mean": jnp.mean(jnp.abs(batch.advantages))}


def fill_logprobs(batch: Batch, logprob_fn, params, ref_params, *, old: bool, chunk: int, mesh,
                  process_count: int) -> Batch:
  """`batch` with old (from `params`, if `old`) and reference (from `ref_params`, if not None)
  log-probs of its response tokens, run by the jitted `logprob_fn` over chunks of `chunk` rows per
  host (one compiled shape; the chunk rows are the same as a host-side split would give)."""
  if not old and ref_params is None:
    return batch
  rows_per_host = batch.advantages.shape[0] // process_count
  response_len = batch.loss_mask.shape[-1]
  rows_sharding = batch_sharding(mesh, 1)
  order, old_chunks, ref_chunks = [], [], []
  for start in range(0, rows_per_host, chunk):
    rows = host_major_rows(np.arange(start, start + chunk)[None], rows_per_host, process_count)[0]
    order.append(rows)
    inputs = take_rows((batch.tokens, batch.attention_mask, batch.positions),
                       put_replicated(rows, mesh), sharding=rows_sharding)
    if old:
      old_chunks.append(logprob_fn(params, *inputs, response_len))
    if ref_params is not None:
      ref_chunks.append(logprob_fn(ref_params, *inputs, response_len))
  # The chunks' rows in batch order: the inverse of the chunk order (the identity on one process).
  order = np.concatenate(order)
  inverse = None if np.array_equal(order, np.arange(order.size)) else put_replicated(np.argsort(order), mesh)
  merge = lambda chunks: _merge_chunks(tuple(chunks), inverse, sharding=rows_sharding)
  return batch._replace(old_logprobs=merge(old_chunks) if old else batch.old_logprobs,
                        ref_logprobs=merge(ref_chunks) if ref_chunks else batch.ref_logprobs)


@functools.partial(jax.jit, static_argnames=("sharding",))
def _merge_chunks(chunks: tuple, inverse: jax.Array | None, *, sharding: NamedSharding) -> jax.Array:
  out = jnp.concatenate(chunks) if len(chunks) > 1 else chunks[0]
  return jax.lax.with_sharding_constraint(out if inverse is None else out[inverse], sharding)
