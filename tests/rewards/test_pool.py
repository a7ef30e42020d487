"""VerifierPool: timeouts, crashes, recovery, truncation, clean shutdown. One shared pool keeps it fast."""
import os
import time

import pytest

from simko_jax.rewards import registry
from simko_jax.rewards.pool import VerifierPool
from tests.rewards import _pool_helpers as helpers

TIMEOUT_S = 2.0
_TEST_SOURCES = {"t_hang": helpers.hang_reward, "t_c_hang": helpers.c_level_hang_reward,
                 "t_exit": helpers.exit_reward, "t_sigkill": helpers.sigkill_self_reward,
                 "t_segv": helpers.segfault_reward, "t_raise": helpers.raising_reward,
                 "t_nan": helpers.nan_reward}


@pytest.fixture(scope="module")
def pool():
  for name, fn in _TEST_SOURCES.items():
    registry.register_reward(name, fn, overwrite=True)
  with VerifierPool(num_workers=2, timeout_s=TIMEOUT_S, max_response_chars=50_000) as shared:
    yield shared
  for name in _TEST_SOURCES:
    registry.unregister_reward(name)


NORMAL = [("so \\boxed{\\frac12}", "0.5", "math"), ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", "math500"),
          ("#### 1,000", "1000", "gsm8k"), ("\\boxed{3}", "4", "math")]
NORMAL_EXPECTED = [1.0, 1.0, 1.0, 0.0]


def _pid_gone(pid: int, wait_s: float = 5.0) -> bool:
  deadline = time.monotonic() + wait_s
  while time.monotonic() < deadline:
    try:
      with open(f"/proc/{pid}/stat") as f:
        if f.read().split(")")[-1].split()[0] == "Z":
          pass  # zombie: not yet reaped, keep waiting
    except FileNotFoundError:
      return True
    time.sleep(0.05)
  return False


def test_normal_batch(pool):
  assert pool.score(NORMAL) == NORMAL_EXPECTED
  stats = pool.last_batch_stats
  assert (stats.num_answers, stats.num_timeouts, stats.num_crashes) == (4, 0, 0)


def test_adversarial_answers_finish_in_time(pool):
  nested = "\\boxed{" + "\\frac{1}{" * 500 + "2" + "}" * 500 + "}"
  hostile = [("\\boxed{9^{9^{9^{9^{9}}}}}", "1", "math"), (nested, "1", "math"),
             ("x" * 1_000_000 + "\\boxed{", "1", "math"), ("\\boxed{(10^{10^{10}})!}", "2", "math"),
             ("irrelevant", "1", "t_c_hang"), ("irrelevant", "1", "t_hang")]
  batch = NORMAL + hostile
  start = time.monotonic()
  rewards = pool.score(batch)
  elapsed = time.monotonic() - start
  assert rewards == NORMAL_EXPECTED + [0.0] * len(hostile)
  # Two guaranteed hangs on two workers run in parallel: about one timeout, plus slack for restarts.
  assert elapsed < 2 * TIMEOUT_S + 6.0, elapsed
  stats = pool.last_batch_stats
  assert stats.num_timeouts >= 2 and stats.num_truncated == 1
  assert pool.score(NORMAL) == NORMAL_EXPECTED  # replaced workers are healthy


@pytest.mark.parametrize("source", ["t_exit", "t_sigkill", "t_segv"])
def test_crashing_worker_is_replaced(pool, source):
  before = set(pool.worker_pids())
  rewards = pool.score(NORMAL[:2] + [("x", "1", source)] + NORMAL[2:])
  assert rewards == NORMAL_EXPECTED[:2] + [0.0] + NORMAL_EXPECTED[2:]
  assert pool.last_batch_stats.num_crashes == 1 and pool.last_batch_stats.num_worker_restarts == 1
  dead = before - set(pool.worker_pids())
  assert len(dead) == 1 and all(_pid_gone(pid) for pid in dead)
  assert pool.score(NORMAL) == NORMAL_EXPECTED


def test_worker_killed_externally_while_idle(pool):
  victim = pool.worker_pids()[0]
  os.kill(victim, 9)
  assert _pid_gone(victim)
  assert pool.score(NORMAL * 3) == NORMAL_EXPECTED * 3
  assert victim not in pool.worker_pids()


def test_raising_and_nan_rewards_score_zero(pool):
  assert pool.score([("x", "1", "t_raise"), ("x", "1", "t_nan")] + NORMAL[:1]) == [0.0, 0.0, 1.0]
  assert pool.last_batch_stats.num_errors == 2 and pool.last_batch_stats.num_crashes == 0


def test_unknown_source_raises_before_work(pool):
  with pytest.raises(KeyError, match="no reward function"):
    pool.score([("\\boxed{1}", "1", "nope")])
  assert pool.score([]) == []


def test_batch_timeout_and_clean_close():
  registry.register_reward("t_hang", helpers.hang_reward, overwrite=True)
  try:
    pool = VerifierPool(num_workers=1, timeout_s=30.0, batch_timeout_s=1.0, max_response_chars=10)
    pids = pool.worker_pids()
    start = time.monotonic()
    assert pool.score([("x", "1", "t_hang"), ("\\boxed{1}", "1", "math")]) == [0.0, 0.0]
    assert time.monotonic() - start < 4.0
    assert pool.last_batch_stats.num_timeouts == 2
    pids += pool.worker_pids()
    pool.close()
    pool.close()  # idempotent
    assert all(_pid_gone(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="closed"):
      pool.score(NORMAL)
  finally:
    registry.unregister_reward("t_hang")


def test_spawn_start_method_and_memory_limit():
  registry.register_reward("t_hog", helpers.memory_hog_reward, overwrite=True)
  try:
    with VerifierPool(num_workers=1, timeout_s=10.0, start_method="spawn", max_memory_mb=3072) as pool:
      assert pool.score([("x", "1", "t_hog")] + NORMAL) == [0.0] + NORMAL_EXPECTED
      assert pool.last_batch_stats.num_errors + pool.last_batch_stats.num_crashes == 1
      pids = pool.worker_pids()
    assert all(_pid_gone(pid) for pid in pids)
  finally:
    registry.unregister_reward("t_hog")
