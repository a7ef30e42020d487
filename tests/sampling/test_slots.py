"""The continuous-batching scheduler (`sampling.slots`) with a fake model against a Python reference.

The fake "model" keeps a per-slot state (its stand-in for a cache row), reset from the pair's prompt on
refill (the stand-in for a prefill); its next token depends on (pair, position, state), and it emits a
stop at a pair-dependent length. A scheduler that fed a slot the wrong pair or position, skipped a
reset, or wrote a token to the wrong row gives other tokens than the reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from simko_jax.sampling.slots import (drained, empty_output, init_slots, prompt_and_sample, record, refill,
                                      refilled_rows, schedule)

V, PAD, MOD = 97, 0, 1_000_003
G = 3  # samples per prompt


def stop_len(pair):
  """Pair-dependent response length at which the fake model emits its stop (1 .. 19)."""
  return (pair * 7919) % 19 + 1


def next_token(pair, pos, state):
  """Fake model step (numpy or jax ints): (token, log-prob, new state)."""
  prompt, sample = pair // G, pair % G
  token = (state * 31 + prompt * 7 + sample * 3 + pos * 13) % (V - 1) + 1
  return token, -(token / V), (state * 17 + token) % MOD


def prefill_state(pair):
  return (pair // G) * 101 + 5  # depends on the prompt only: the G samples share it


def fake_decode(carry, slots, refilled_N):
  state_N = jnp.where(refilled_N, prefill_state(slots.pair_N), carry)
  token_N, logprob_N, state_N = next_token(slots.pair_N, slots.pos_N, state_N)
  stop_N = slots.pos_N + 1 == stop_len(slots.pair_N)
  return state_N, token_N.astype(jnp.int32), logprob_N.astype(jnp.float32), stop_N


def reference(queue, budget, num_slots, max_len, max_refill=None):
  """Python scheduler: slots refilled in slot order from the queue (at most max_refill a step after the
  first fill); outputs by pair; decode steps."""
  b = len(queue)
  tokens = np.full((b, max_len), PAD, np.int64)
  logprobs = np.zeros((b, max_len), np.float32)
  mask = np.zeros((b, max_len), np.int64)
  stopped = np.zeros(b, bool)
  slots = [None] * num_slots  # [pair, pos, state] or None
  head, steps = 0, 0

  def fill(limit):
    nonlocal head
    for n in range(num_slots):
      if slots[n] is None and head < b and limit > 0:
        slots[n] = [queue[head], 0, prefill_state(queue[head])]
        head, limit = head + 1, limit - 1

  fill(num_slots)
  while any(s is not None for s in slots):
    steps += 1
    for n, s in enumerate(slots):
      if s is None:
        continue
      pair, pos, state = s
      token, logprob, state = next_token(pair, pos, state)
      tokens[pair, pos], logprobs[pair, pos], mask[pair, pos] = token, logprob, 1
      stop = pos + 1 == stop_len(pair)
      stopped[pair] = stop
      slots[n] = None if stop or pos + 1 >= min(budget[pair], max_len) else [pair, pos + 1, state]
    fill(num_slots if max_refill is None else max_refill)
  return tokens, logprobs, mask, stopped, steps


def run(queue, budget, num_slots, max_len, max_refill=None, constrain=lambda tree: tree, place=lambda x: x):
  fn = jax.jit(lambda q, bud, carry: schedule(fake_decode, carry, q, bud, num_slots=num_slots, max_len=max_len,
                                              pad_id=PAD, max_refill=max_refill, constrain=constrain))
  carry = place(jnp.zeros((num_slots,), jnp.int32))
  _, out, steps = fn(place(jnp.asarray(queue, jnp.int32)), place(jnp.asarray(budget, jnp.int32)), carry)
  return out, int(steps)


@pytest.mark.parametrize("num_pairs,num_slots,order,max_refill", [
    (24, 4, "identity", None), (30, 8, "permuted", None), (5, 8, "identity", None), (12, 1, "reversed", None),
    (30, 8, "permuted", 2)])
def test_schedule_matches_python_reference(num_pairs, num_slots, order, max_refill):
  rng = np.random.default_rng(num_pairs)
  queue = {"identity": np.arange(num_pairs), "reversed": np.arange(num_pairs)[::-1],
           "permuted": rng.permutation(num_pairs)}[order]
  budget = rng.integers(1, 25, num_pairs)  # some responses end by budget, some by their stop
  max_len = 16  # budgets above it are capped
  out, steps = run(queue, budget, num_slots, max_len, max_refill)
  tokens, logprobs, mask, stopped, ref_steps = reference(queue.tolist(), budget, num_slots, max_len, max_refill)
  np.testing.assert_array_equal(np.asarray(out.tokens_BxR), tokens)
  np.testing.assert_allclose(np.asarray(out.logprobs_BxR), logprobs, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(out.mask_BxR), mask)
  np.testing.assert_array_equal(np.asarray(out.stopped_B), stopped)
  assert steps == ref_steps
  lengths = np.minimum([stop_len(p) for p in range(num_pairs)], np.minimum(budget, max_len))
  np.testing.assert_array_equal(mask.sum(-1), lengths)  # every pair decoded once, to its end
  assert stopped.any() and not stopped.all()
  if max_refill is None:  # refilling pays: no more steps than static batches of num_slots rows
    static = sum(lengths[queue[i:i + num_slots]].max() for i in range(0, num_pairs, num_slots))
    assert steps <= static


def test_refill_hands_out_queue_entries_in_slot_order():
  queue = jnp.asarray([5, 3, 0, 4, 1, 2], jnp.int32)
  slots, refilled = refill(init_slots(4), queue)
  np.testing.assert_array_equal(slots.pair_N, [5, 3, 0, 4])
  assert refilled.all() and int(slots.head) == 4 and not slots.done_N.any()
  out = empty_output(6, 4, PAD)
  # Slot 1 (pair 3) emits a stop, slot 3 (pair 4) reaches its budget of 1; slots 0 and 2 go on.
  budget = jnp.asarray([4, 4, 4, 4, 1, 4], jnp.int32)
  stop = jnp.asarray([False, True, False, False])
  slots, out = record(slots, out, jnp.asarray([7, 8, 9, 10]), jnp.zeros(4), stop, budget)
  np.testing.assert_array_equal(slots.done_N, [False, True, False, True])
  np.testing.assert_array_equal(out.tokens_BxR[:, 0], [9, PAD, PAD, 8, 10, 7])
  capped, refilled = refill(slots, queue, max_refill=1)  # slot 3 waits for the next step
  np.testing.assert_array_equal(capped.pair_N, [5, 1, 0, -1])
  assert int(capped.head) == 5 and capped.done_N[3] and not capped.done_N[1]
  np.testing.assert_array_equal(refilled_rows(refilled, 2), [1, 4])
  slots, refilled = refill(slots, queue)
  np.testing.assert_array_equal(slots.pair_N, [5, 1, 0, 2])
  np.testing.assert_array_equal(refilled, [False, True, False, True])
  np.testing.assert_array_equal(refilled_rows(refilled, 3), [1, 3, 4])
  np.testing.assert_array_equal(slots.pos_N, [1, 0, 1, 0])
  slots, refilled = refill(slots._replace(done_N=jnp.asarray([True, True, False, False])), queue)
  np.testing.assert_array_equal(slots.pair_N, [-1, -1, 0, 2])  # queue drained: slots 0, 1 go idle
  assert not refilled.any() and slots.done_N[:2].all() and not bool(drained(slots, 6))
  assert bool(drained(slots._replace(pair_N=jnp.full((4,), -1)), 6))
  np.testing.assert_array_equal(prompt_and_sample(jnp.asarray([0, 4, 5]), 3)[0], [0, 1, 1])
  np.testing.assert_array_equal(prompt_and_sample(jnp.asarray([0, 4, 5]), 3)[1], [0, 1, 2])


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake CPU) devices")
def test_sharded_slots_equal_unsharded():
  """Slot rows and output rows sharded over the 8 fake devices ((2, 2, 2) mesh, rows over all three
  axes): the same outputs and steps as one device."""
  from simko_jax.parallel import make_mesh
  mesh = make_mesh(2, 2, 2)
  rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp", "tensor")))

  def constrain(tree):
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(
        x, NamedSharding(mesh, PartitionSpec(("data", "fsdp", "tensor")))) if x.ndim else x, tree)

  rng = np.random.default_rng(0)
  queue, budget = rng.permutation(40), rng.integers(1, 25, 40)
  want, want_steps = run(queue, budget, 16, 16, max_refill=4)
  with jax.set_mesh(mesh):
    got, steps = run(queue, budget, 16, 16, max_refill=4, constrain=constrain,
                     place=lambda x: jax.device_put(x, rows))
  assert got.tokens_BxR.sharding.spec == rows.spec
  for name in ("tokens_BxR", "logprobs_BxR", "mask_BxR", "stopped_B"):
    np.testing.assert_array_equal(np.asarray(getattr(got, name)), np.asarray(getattr(want, name)))
  assert steps == want_steps
