"""HostRewards: the verifier pool called from inside jit (pure_callback), with its timeouts, on one device
and with rows sharded over the 8 fake CPU devices."""
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from simko_jax.parallel import MESH_AXES, make_mesh
from simko_jax.rewards import registry
from simko_jax.rewards.countdown_check import countdown_ground_truth
from simko_jax.rewards.host_callback import HostRewards
from simko_jax.rewards.pool import VerifierPool
from tests.rewards import _pool_helpers as helpers

TIMEOUT_S = 1.5
ROWS = [("\\boxed{\\frac12}", "0.5", "math"), ("\\boxed{3}", "4", "math"), ("#### 1,000", "1000", "gsm8k"),
        ("\\boxed{42}", "42", "arith"), ("so 7", "7", "arith_plain"),
        ("<answer>(3+5)*3</answer>", countdown_ground_truth([3, 5, 3], 24), "countdown"),
        ("<answer>3*8</answer>", countdown_ground_truth([3, 5, 3], 24), "countdown"), ("\\boxed{2}", "3", "math")]
WANT = [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def pool():
  registry.register_reward("t_hang_cb", helpers.hang_reward, overwrite=True)
  with VerifierPool(num_workers=2, timeout_s=TIMEOUT_S) as shared:
    yield shared
  registry.unregister_reward("t_hang_cb")


def _tokens(char_tokenizer, texts, width=48):
  ids = [char_tokenizer.encode(text) for text in texts]
  tokens = np.array([i + [char_tokenizer.eos_id] + [0] * (width - len(i) - 1) for i in ids], np.int32)
  mask = np.array([[1] * (len(i) + 1) + [0] * (width - len(i) - 1) for i in ids], np.int32)  # eos is dropped
  return tokens, mask


def test_pool_rewards_inside_jit(pool, char_tokenizer):
  host = HostRewards(pool, char_tokenizer)
  tokens, mask = _tokens(char_tokenizer, [r for r, _, _ in ROWS])
  truth = host.prepare([t for _, t, _ in ROWS], [s for _, _, s in ROWS])
  out = jax.jit(lambda t, m, tr: host(t, m, tr))(tokens, mask, truth)
  np.testing.assert_array_equal(out["rewards"], WANT)
  assert (int(out["timeouts"]), int(out["truncated"])) == (0, 0)


def test_timeout_scores_zero_and_is_counted(pool, char_tokenizer):
  host = HostRewards(pool, char_tokenizer)
  rows = ROWS[:3] + [("anything", "1", "t_hang_cb")]
  tokens, mask = _tokens(char_tokenizer, [r for r, _, _ in rows])
  truth = host.prepare([t for _, t, _ in rows], [s for _, _, s in rows])
  before = pool.total_stats.num_timeouts
  out = jax.jit(lambda t, m, tr: host(t, m, tr))(tokens, mask, truth)
  np.testing.assert_array_equal(out["rewards"], WANT[:3] + [0.0])
  assert int(out["timeouts"]) == 1 and pool.total_stats.num_timeouts == before + 1


def test_rows_sharded_over_8_devices(pool, char_tokenizer):
  assert jax.device_count() == 8
  host = HostRewards(pool, char_tokenizer)
  rows = ROWS * 2
  tokens, mask = _tokens(char_tokenizer, [r for r, _, _ in rows])
  truth = host.prepare([t for _, t, _ in rows], [s for _, _, s in rows])
  by_row = NamedSharding(make_mesh(2, 2, 2), PartitionSpec(MESH_AXES))  # rows over all 8 devices
  tokens, mask, truth = jax.device_put((tokens, mask, truth), by_row)

  @jax.jit
  def step(tokens, mask, truth):
    return host(tokens, mask, truth)["rewards"] * 2.0  # the device goes on computing with the rewards

  np.testing.assert_array_equal(step(tokens, mask, truth), np.array(WANT * 2) * 2.0)


def test_unknown_data_source_fails_in_prepare(pool, char_tokenizer):
  with pytest.raises(KeyError, match="no reward function for data source 'nonsense'"):
    HostRewards(pool, char_tokenizer).prepare(["1"], ["nonsense"])


def test_prepare_keeps_the_last_capacity_ids(char_tokenizer):
  host = HostRewards(pool=None, tokenizer=char_tokenizer, capacity=4)
  first = host.prepare(["1", "2", "3"], ["arith"] * 3)["truth_id"]
  second = host.prepare(["4", "5"], ["arith"] * 2)["truth_id"]
  np.testing.assert_array_equal(np.concatenate([first, second]), np.arange(5))
  assert host._lookup(4) == ("5", "arith")
  with pytest.raises(KeyError, match="never prepared or is older than the last 4"):
    host._lookup(0)
  with pytest.raises(ValueError, match="2 ground truths but 1 data sources"):
    host.prepare(["1", "2"], ["arith"])
