"""The device-side batch: global row indices, assembly (masks, positions, advantages) against numpy,
row gathers and chunked log-probs against one whole-batch call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from simko_jax.parallel import make_mesh
from simko_jax.sampling.sampler import FINISH_LENGTH, FINISH_STOP, SampleOutput
from simko_jax.train import batch as B
from simko_jax.train.step import batch_sharding

G, R = 4, 3


def test_host_major_rows_puts_each_hosts_rows_side_by_side():
  np.testing.assert_array_equal(B.host_major_rows([[3, 1]], 4, 1), [[3, 1]])
  np.testing.assert_array_equal(B.host_major_rows([[0, 1], [2, 3]], 4, 2), [[0, 1, 4, 5], [2, 3, 6, 7]])


@pytest.mark.parametrize("process_index", [0, 1, 2])
def test_parts_rows_finds_this_hosts_rows_in_the_concatenated_parts(process_index):
  sizes, count = [4, 2, 3], 3
  # The device concatenation of the parts, each part host-major: label every global row.
  labels = [(k, h, j) for k, b in enumerate(sizes) for h in range(count) for j in range(b)]
  local = [(k, process_index, j) for k, b in enumerate(sizes) for j in range(b)]  # this host's rows
  chosen = np.asarray([8, 0, 5, 4, 2])
  want = [labels.index(local[r]) for r in chosen]
  np.testing.assert_array_equal(B.parts_rows(chosen, sizes, process_index, count), want)


def part(prompt_width, rewards_seed, num_rows, truncated_rows=()):
  rng = np.random.default_rng(rewards_seed)
  prompt_mask = np.ones((num_rows, prompt_width), np.int32)
  prompt_mask[:, 0] = 0                      # left padding
  lengths = rng.integers(1, R + 1, num_rows)
  response_mask = (np.arange(R)[None] < lengths[:, None]).astype(np.int32)
  tokens = rng.integers(3, 50, (num_rows, prompt_width + R)).astype(np.int32)
  finish = np.where(np.isin(np.arange(num_rows), truncated_rows), FINISH_LENGTH, FINISH_STOP)
  return SampleOutput(tokens=tokens, prompt_mask=prompt_mask, response_mask=response_mask,
                      response_tokens=tokens[:, prompt_width:], logprobs=np.zeros((num_rows, R), np.float32),
                      finish_reason=finish.astype(np.int32), response_lengths=lengths.astype(np.int32),
                      num_steps=np.int32(R))


def reference_advantages(rewards, advantage, eps=1e-6):
  r = rewards.reshape(-1, G).astype(np.float64)
  if advantage == "signed":
    return np.where(r > 0.5, 1.0, -1.0).reshape(-1)
  centred = r - r.mean(-1, keepdims=True)
  if advantage == "grpo_no_std":
    return centred.reshape(-1)
  return (centred / (r.std(-1, ddof=1, keepdims=True) + eps)).reshape(-1)


@pytest.mark.parametrize("advantage", ["grpo", "grpo_no_std", "signed"])
def test_assemble_batch_matches_numpy(advantage):
  mesh = make_mesh(jax.device_count(), 1, 1)
  sharding = batch_sharding(mesh, 1)
  parts = (part(5, 0, 8, truncated_rows=[1]), part(4, 1, 8, truncated_rows=[2]))  # widths differ
  rows = np.concatenate([np.arange(4, 8), np.arange(8, 12)])   # group 1 of part 0, group 0 of part 1
  rewards = np.asarray([1, 0, 0, 1, 0, 0, 0, 1], np.float32)
  got = B.assemble_batch(jax.device_put(parts), jax.device_put(rows.astype(np.int32)),
                         jax.device_put(rewards), group_size=G, advantage=advantage, adv_eps=1e-6,
                         overlong_mask=True, sharding=sharding)
  assert got.tokens.sharding.is_equivalent_to(sharding, 2) and got.advantages.shape == (8,)
  # numpy: part 1's prompts are one column narrower, so they get one more column of left padding.
  tokens = np.concatenate([parts[0].tokens, np.pad(parts[1].tokens, ((0, 0), (1, 0)))])[rows]
  prompt_mask = np.concatenate([parts[0].prompt_mask, np.pad(parts[1].prompt_mask, ((0, 0), (1, 0)))])[rows]
  response_mask = np.concatenate([parts[0].response_mask, parts[1].response_mask])[rows]
  truncated = np.concatenate([parts[0].finish_reason, parts[1].finish_reason])[rows] == FINISH_LENGTH
  attention = np.concatenate([prompt_mask, response_mask], -1)
  np.testing.assert_array_equal(got.tokens, tokens)
  np.testing.assert_array_equal(got.attention_mask, attention)
  np.testing.assert_array_equal(got.positions, np.maximum(np.cumsum(attention, -1) - 1, 0))
  assert truncated.sum() == 1  # row 2 of part 1 is chosen (batch row 6); row 1 of part 0 is not
  np.testing.assert_array_equal(got.loss_mask, response_mask * ~truncated[:, None])
  np.testing.assert_allclose(got.advantages, reference_advantages(rewards, advantage), rtol=1e-6)
  one_device = jax.jit(B.advantages_of, static_argnums=(1, 2, 3))(rewards, G, advantage, 1e-6)
  np.testing.assert_array_equal(got.advantages, one_device)  # the mesh does not change a bit
  np.testing.assert_array_equal(got.old_logprobs, 0)
  whole = B.assemble_batch((jax.device_put(parts[0]),), None, jax.device_put(rewards), group_size=G,
                           advantage=advantage, adv_eps=1e-6, overlong_mask=False, sharding=sharding)
  np.testing.assert_array_equal(whole.tokens, parts[0].tokens)
  np.testing.assert_array_equal(whole.loss_mask, parts[0].response_mask)  # no overlong masking


def test_take_rows_gathers_micro_batches():
  mesh = make_mesh(jax.device_count(), 1, 1)
  x = jax.device_put(np.arange(16 * 3).reshape(16, 3), batch_sharding(mesh, 1))
  rows = np.random.default_rng(0).permutation(16).reshape(2, 8)
  got = B.take_rows({"x": x}, B.put_replicated(rows, mesh), sharding=batch_sharding(mesh, 2))
  assert got["x"].shape == (2, 8, 3) and got["x"].sharding.is_equivalent_to(batch_sharding(mesh, 2), 3)
  np.testing.assert_array_equal(got["x"], np.asarray(x)[rows])


@pytest.mark.parametrize("process_count", [1, 2])
def test_chunked_logprobs_equal_one_whole_batch_call(process_count):
  """Chunks of 4 rows per host (row layout as with `process_count` hosts) give every row the value a
  single call over all rows gives, old and reference alike."""
  mesh = make_mesh(jax.device_count(), 1, 1)
  rng = np.random.default_rng(1)
  n, t = 16, 7
  tokens = rng.integers(0, 9, (n, t)).astype(np.int32)
  batch = B.Batch(tokens=tokens, attention_mask=np.ones((n, t), np.int32),
                  positions=np.tile(np.arange(t, dtype=np.int32), (n, 1)),
                  loss_mask=np.ones((n, R), np.float32), old_logprobs=np.zeros((n, R), np.float32),
                  ref_logprobs=np.zeros((n, R), np.float32), advantages=np.zeros((n,), np.float32))
  batch = jax.device_put(batch, batch_sharding(mesh, 1))
  fn = jax.jit(lambda w, tok, mask, pos, r: jnp.log1p(w * (tok[:, -r:] + pos[:, -r:] * mask[:, -r:])),
               static_argnums=4)
  got = B.fill_logprobs(batch, fn, 0.5, 2.0, old=True, chunk=4, mesh=mesh, process_count=process_count)
  np.testing.assert_allclose(got.old_logprobs, fn(0.5, tokens, batch.attention_mask, batch.positions, R))
  np.testing.assert_allclose(got.ref_logprobs, fn(2.0, tokens, batch.attention_mask, batch.positions, R))
  assert got.old_logprobs.sharding.is_equivalent_to(batch_sharding(mesh, 1), 2)
  unchanged = B.fill_logprobs(batch, fn, 0.5, None, old=False, chunk=4, mesh=mesh,
                              process_count=process_count)
  assert unchanged is batch
