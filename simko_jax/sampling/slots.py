"""Continuous batching as pure, jittable functions: N decode slots serve a queue of B (prompt, sample) pairs.

A static batch decodes until its longest row finishes, so with long-tailed response lengths most of its
steps run for a few live rows. Here a slot whose response finishes takes the next pair of the queue at
the next step, until the queue is drained (issue 26). This module is the scheduler only; the model
plugs in through one `decode` function (phase 2, below).

  slots, refilled_N = refill(init_slots(N), queue_B)     # the first N pairs
  out = empty_output(B, R, pad_id)
  while not drained(slots, B):
    carry, token_N, logprob_N, stop_N = decode(carry, slots, refilled_N)
    slots, out = record(slots, out, token_N, logprob_N, stop_N, budget_B)
    slots, refilled_N = refill(slots, queue_B)

`schedule` is that loop as one `lax.while_loop` (jit it, or trace it inside a larger program).

Shapes (docs/shapes.md): N decode slots, B pairs = P prompts x G samples, R response tokens. Pair b is
sample b % G of prompt b // G, the row order of the static sampler's output, so the output arrays
[B, R] are laid out exactly as `Sampler.sample`'s. `queue_B` is the order in which pairs are handed
out (a permutation of arange(B); e.g. longest-expected first); it never changes where a pair's output
lands.

Invariants (checked against a Python reference scheduler in tests/sampling/test_slots.py):
  - a slot is live (holds a pair) iff not done_N after `refill`; idle slots hold pair -1 and stay done;
  - `refill` hands queue entries out in slot order: the k-th done slot (cumsum over done_N) takes entry
    head + k, a gather from the queue (at most `max_refill` a step); a slot left without one is idle;
  - `record` writes each live slot's token at out[pair, pos] (one scatter of N values a step; idle
    slots write nowhere), then ends the response when it emitted a stop id or reached its budget;
  - the loop ends when the queue is drained and every slot is idle (`drained`): every pair is decoded
    exactly once, each of its tokens written once, in order.

Sharding: every [N, ...] and [B, ...] array is row-indexed; `schedule(constrain=...)` applies the
caller's row sharding to the carry each step (as the static sampler's `shard_rows`). The per-step
scatter into the [B, R] outputs moves N values, not rows.

Phase 2 (the model inside `decode`, after the one-block decoder lands):
  1. Cache rows are slots: the decode cache has N rows, not B. Slot n holds its pair's prompt
     left-padded to Pb at cache slots [0, Pb - 1) and response token i at cache slot Pb - 1 + i, as
     today; its kv mask row is reset on refill to prompt_mask ++ zeros.
  2. Prefill on refill: the slots refilled at a step are prefilled together, in `decode` before its
     decode step: rows_M = `refilled_rows(refilled_N, M)` with M = `max_refill` (a static shape; the
     first fill of all N slots is the static sampler's prefill), their prompts
     prompt_BxTp[pair_N[rows_M] // G] run through the prefill and are scattered into those cache rows
     (mode="drop" for the padding rows), under a `lax.cond` that skips steps with no refill.
     Shared prefixes: the G samples of a prompt are adjacent in the queue, so where a [P, ...] prompt
     cache fits, prefill each prompt once (P rows, as the static sampler does) and make a refill a row
     gather from it (no recompute); the benchmark's n = 1 workload cannot gain from it.
  3. One decode step with per-row cache positions: row n feeds its last token (the prompt's last
     token when pos_N[n] == 0) at cache slot slot_N[n] = Pb - 1 + pos_N[n], RoPE position
     prompt_length(pair) + pos_N[n]. The attention then needs: the per-row write column (a per-row
     `dynamic_update_slice` (vmap) or a one-hot select instead of one column for all rows), the
     per-row kv mask (already per row), and a key-block skip driven by max(slot_N) over the rows
     (blocks past every row's slot are skipped; rows behind the max see the extra keys masked).
  4. Keys: token pos of pair (p, j) is drawn with fold_in(fold_in(fold_in(key, p), j), pos) and
     per-row keys in `sample_next`, exactly as the static sampler does now, so each response equals
     the static one (tokens exactly, log-probs to float32 rounding); tests: continuous == static on
     tiny and SmolLM2 models (float32), one device and the (2, 2, 2) mesh.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class Slots(NamedTuple):
  """Per-slot scheduler state (N slots)."""
  pair_N: jax.Array  # int32 [N]: pair (index into the outputs) the slot decodes; -1 = idle
  pos_N: jax.Array   # int32 [N]: response index of the slot's next token (0 right after a refill)
  done_N: jax.Array  # bool [N]: the slot's response has ended (or the slot is idle): refill it
  head: jax.Array    # int32 []: queue entries handed out so far


class Output(NamedTuple):
  """Responses by pair (B pairs, R response columns), the static sampler's layout."""
  tokens_BxR: jax.Array    # int32: generated tokens; pad_id after the end
  logprobs_BxR: jax.Array  # float32: 0 after the end
  mask_BxR: jax.Array      # int32: 1 = generated token (up to and including a stop token)
  stopped_B: jax.Array     # bool: ended by a stop id (else by its budget)


def init_slots(num_slots: int) -> Slots:
  """N idle slots (done, pair -1) and an untouched queue: the first `refill` hands out N pairs."""
  return Slots(pair_N=jnp.full((num_slots,), -1, jnp.int32), pos_N=jnp.zeros((num_slots,), jnp.int32),
               done_N=jnp.ones((num_slots,), bool), head=jnp.int32(0))


def empty_output(num_pairs: int, max_len: int, pad_id: int) -> Output:
  return Output(tokens_BxR=jnp.full((num_pairs, max_len), pad_id, jnp.int32),
                logprobs_BxR=jnp.zeros((num_pairs, max_len), jnp.float32),
                mask_BxR=jnp.zeros((num_pairs, max_len), jnp.int32), stopped_B=jnp.zeros((num_pairs,), bool))


def refill(slots: Slots, queue_B: jax.Array, max_refill: int | None = None) -> tuple[Slots, jax.Array]:
  """Give done slots the next queue entries, in slot order (at most `max_refill` slots, static; None =
  all). Returns (slots, refilled_N bool): the slots that took a new pair (their cache rows need the
  pair's prompt). Done slots left without a pair (queue drained, or over `max_refill`: they get one
  at a later step) hold pair -1."""
  b = queue_B.shape[0]
  free_N = slots.done_N
  rank_N = jnp.cumsum(free_N.astype(jnp.int32)) - 1  # the k-th free slot takes queue entry head + k
  refilled_N = free_N & (slots.head + rank_N < b)
  if max_refill is not None:
    refilled_N &= rank_N < max_refill
  new_pair_N = queue_B[jnp.clip(slots.head + rank_N, 0, b - 1)]
  slots = Slots(pair_N=jnp.where(refilled_N, new_pair_N, jnp.where(free_N, -1, slots.pair_N)),
                pos_N=jnp.where(refilled_N, 0, slots.pos_N),
                done_N=free_N & ~refilled_N,
                head=slots.head + refilled_N.sum(dtype=jnp.int32))
  return slots, refilled_N


def refilled_rows(refilled_N: jax.Array, size: int) -> jax.Array:
  """int32 [size]: the indices of the first `size` refilled slots, padded with N (out of range: a
  scatter with mode="drop" skips them): the rows a fixed-shape prefill of the new prompts writes."""
  return jnp.nonzero(refilled_N, size=size, fill_value=refilled_N.shape[0])[0].astype(jnp.int32)


def record(slots: Slots, out: Output, token_N: jax.Array, logprob_N: jax.Array, stop_N: jax.Array,
           budget_B: jax.Array) -> tuple[Slots, Output]:
  """Write each live slot's token at out[pair, pos] and advance it; a response ends when its token is a
  stop id (stop_N) or it holds budget_B[pair] tokens (budget_B <= R). Idle slots write nowhere."""
  b = out.tokens_BxR.shape[0]
  live_N = ~slots.done_N
  row_N = jnp.where(live_N, slots.pair_N, b)  # row b is out of range: mode="drop" skips the write
  col_N = slots.pos_N
  out = Output(tokens_BxR=out.tokens_BxR.at[row_N, col_N].set(token_N.astype(jnp.int32), mode="drop"),
               logprobs_BxR=out.logprobs_BxR.at[row_N, col_N].set(logprob_N.astype(jnp.float32), mode="drop"),
               mask_BxR=out.mask_BxR.at[row_N, col_N].set(1, mode="drop"),
               stopped_B=out.stopped_B.at[row_N].set(stop_N, mode="drop"))  # the last write is the end's
  length_N = col_N + 1
  ended_N = live_N & (stop_N | (length_N >= budget_B[jnp.clip(slots.pair_N, 0, b - 1)]))
  slots = slots._replace(pos_N=jnp.where(live_N, length_N, col_N), done_N=slots.done_N | ended_N)
  return slots, out


def drained(slots: Slots, queue_size: int) -> jax.Array:
  """[] bool: the queue is drained and no slot holds a pair (every response has ended)."""
  return (slots.head >= queue_size) & jnp.all(slots.pair_N < 0)


def prompt_and_sample(pair_N: jax.Array, group: int) -> tuple[jax.Array, jax.Array]:
  """(prompt index, sample index) of each pair: pair b is sample b % G of prompt b // G."""
  return pair_N // group, pair_N % group


class _Loop(NamedTuple):
  carry: Any
  slots: Slots
  refilled_N: jax.Array
  out: Output
  steps: jax.Array


Decode = Callable[[Any, Slots, jax.Array], tuple[Any, jax.Array, jax.Array, jax.Array]]


def schedule(decode: Decode, carry: Any, queue_B: jax.Array, budget_B: jax.Array, *, num_slots: int,
             max_len: int, pad_id: int, max_refill: int | None = None,
             constrain: Callable[[Any], Any] = lambda tree: tree) -> tuple[Any, Output, jax.Array]:
  """Serve every pair of `queue_B` (int32 [B], a permutation of arange(B)) with `num_slots` slots.

  decode(carry, slots, refilled_N) -> (carry, token_N int32, logprob_N float32, stop_N bool): the next
  token of each live slot's pair at response index slots.pos_N (refilled_N: slots that took a new pair
  since the last call, whose per-slot state must be reset from their pair's prompt first); values of
  idle slots are ignored. budget_B: int32 [B] in [1, max_len]. max_refill: at most this many slots
  take a new pair per step after the first fill of all N (a static bound for the prefill of refilled
  slots; None = every free slot). constrain: applied to (carry, slots, out) after each step (e.g.
  `with_sharding_constraint` of the row axes). Returns (carry, outputs by pair, decode steps run).
  """
  slots, refilled_N = refill(init_slots(num_slots), queue_B)
  budget_B = jnp.minimum(budget_B, max_len)

  def step(c: _Loop) -> _Loop:
    carry, token_N, logprob_N, stop_N = decode(c.carry, c.slots, c.refilled_N)
    slots, out = record(c.slots, c.out, token_N, logprob_N, stop_N, budget_B)
    slots, refilled_N = refill(slots, queue_B, max_refill)
    carry, slots, out = constrain((carry, slots, out))
    return _Loop(carry, slots, refilled_N, out, c.steps + 1)

  init = _Loop(carry, slots, refilled_N, empty_output(queue_B.shape[0], max_len, pad_id), jnp.int32(0))
  final = jax.lax.while_loop(lambda c: ~drained(c.slots, queue_B.shape[0]), step, init)
  return final.carry, final.out, final.steps
