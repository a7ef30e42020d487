"""Verifier abuse against the trainer's VerifierPool settings: answers crafted to hang or blow up the
math checker and gigantic outputs each cost at most about one timeout, and the pool recovers from
crashed or externally killed workers. (More cases: tests/rewards/test_pool.py.)"""

import os
import signal
import threading
import time

import pytest

from simko_jax.rewards import registry
from simko_jax.rewards.pool import VerifierPool
from tests.rewards import _pool_helpers as helpers

TIMEOUT_S = 2.0
SLACK_S = 4.0  # killing + restarting one worker on a loaded 2-core machine
GOOD = [("so \\boxed{\\frac12}", "0.5", "math"), ("#### 1,000", "1000", "gsm8k")]
HOSTILE = {
    "power_tower": "\\boxed{9^{9^{9^{9^{9}}}}}",
    "huge_factorial": "\\boxed{(10^{10^{10}})!}",
    "deep_nesting": "\\boxed{" + "\\frac{1}{" * 2000 + "2" + "}" * 2000 + "}",
    "unbalanced_braces": "\\boxed{" + "{(" * 50_000,
    "gigantic_output_100MB": "7" * 100_000_000 + "\\boxed{3}",
    "gigantic_boxed": "\\boxed{" + "1+" * 5_000_000 + "1}",
}
SOURCES = {"t_hang": helpers.hang_reward, "t_c_hang": helpers.c_level_hang_reward,
           "t_segv": helpers.segfault_reward, "t_exit": helpers.exit_reward}


@pytest.fixture(scope="module")
def pool():
  for name, fn in SOURCES.items():
    registry.register_reward(name, fn, overwrite=True)
  with VerifierPool(num_workers=2, timeout_s=TIMEOUT_S) as shared:  # trainer: max 20k chars kept
    shared.score(GOOD)  # workers warm
    yield shared
  for name in SOURCES:
    registry.unregister_reward(name)


def _timed(pool, batch):
  start = time.monotonic()
  rewards = pool.score(batch)
  return rewards, time.monotonic() - start


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_crafted_answer_costs_at_most_one_timeout(pool, name):
  rewards, elapsed = _timed(pool, [(HOSTILE[name], "3", "math")])
  assert rewards in ([0.0], [1.0]) and elapsed < TIMEOUT_S + SLACK_S, (name, elapsed)
  assert pool.score(GOOD) == [1.0, 1.0]


@pytest.mark.parametrize("source", ["t_hang", "t_c_hang"])
def test_checker_that_never_returns_is_cut_at_the_timeout(pool, source):
  rewards, elapsed = _timed(pool, [("x", "1", source)] + GOOD)
  assert rewards == [0.0, 1.0, 1.0] and pool.last_batch_stats.num_timeouts == 1
  assert TIMEOUT_S <= elapsed < TIMEOUT_S + SLACK_S, elapsed


@pytest.mark.parametrize("source", ["t_segv", "t_exit"])
def test_crashing_checker_scores_zero_and_worker_is_replaced(pool, source):
  rewards, _ = _timed(pool, GOOD + [("x", "1", source)] + GOOD)
  assert rewards == [1.0, 1.0, 0.0, 1.0, 1.0]
  assert pool.last_batch_stats.num_crashes == 1 and pool.last_batch_stats.num_worker_restarts == 1


def test_worker_killed_from_outside_mid_answer(pool):
  def kill_busy_worker():
    time.sleep(0.5)
    for pid in pool.worker_pids():
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
  killer = threading.Thread(target=kill_busy_worker)
  killer.start()
  rewards, elapsed = _timed(pool, [("x", "1", "t_hang"), ("x", "1", "t_hang")] + GOOD)
  killer.join()
  stats = pool.last_batch_stats
  assert rewards == [0.0, 0.0, 1.0, 1.0] and elapsed < 2 * TIMEOUT_S + SLACK_S, elapsed
  # Normally both hanging answers are in flight when their workers die (2 crashes); a worker that was
  # still starting gets killed before its task, which then runs into the timeout instead.
  assert stats.num_crashes >= 1 and stats.num_crashes + stats.num_timeouts == 2
  assert pool.score(GOOD * 2) == [1.0] * 4
