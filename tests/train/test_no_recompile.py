"""A real tiny training run compiles nothing after its first iteration.

`configs/tiny_random.py` (off-policy: two mini-batches per iteration, so the separate old-log-prob
forward runs too) on this suite's 8 fake CPU devices (sharded sampler, train step and log-prob pass),
3 iterations through `train.loop.run` with a checkpoint after every step. Counted, per iteration:
  * `Sampler.num_compilations` (traces of the sampler program),
  * the jitted train step's and log-prob forward's `_cache_size()` (one entry per compiled signature),
  * every XLA backend compilation in the process (`jax.monitoring` duration events
    '/jax/core/compile/backend_compile_duration', emitted once per compile by jax 0.10), which also
    catches small eager ops (slicing, concatenation) that would compile on new shapes or shardings,
    during the iterations and between them (logging, checkpoint saves).
After iteration 1 every count must stay put, except that the first checkpoint save (between iterations
1 and 2) compiles orbax's per-shard slice programs once; the second save must compile nothing.
Signed advantages make every update change the params (the random model earns no reward, so GRPO's
would be 0); each iteration must move them.
"""

import jax
import numpy as np
import pytest

from configs import tiny_random
from simko_jax.train import loop

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


def counts(run, compiles: list) -> dict:
  return {"sampler": run.sampler.num_compilations, "train_step": run.train_step._cache_size(),
          "logprobs": run.logprob_fn._cache_size(), "backend": len(compiles)}


@pytest.mark.skipif(jax.device_count() != 8, reason="expects the suite's 8 fake CPU devices")
def test_nothing_recompiles_after_the_first_iteration(tmp_path, monkeypatch):
  cfg = tiny_random.get_config()
  cfg.out_dir = str(tmp_path)
  cfg.train.steps = 3
  cfg.eval.enabled = False
  cfg.checkpoint.every = 1
  cfg.checkpoint.async_save = False  # saves finish before the next count (no compiles in flight)
  cfg.rollout.group_size = 8         # micro-batches of 8 responses: one per device
  cfg.algo.micro_batch_size = 8
  cfg.algo.advantage = "signed"

  compiles: list = []

  def listener(event, duration, **kw):
    if event == BACKEND_COMPILE:
      compiles.append(duration)

  snapshots = []  # (counts before, counts after) each iteration
  unchanged = []  # per iteration: param arrays the update left equal
  original = loop.iteration
  host = lambda params: [np.asarray(x) for x in jax.tree.leaves(params)]

  def counted_iteration(run, logger):
    before = counts(run, compiles)
    params_before = host(run.params)   # copied: the train step donates the params
    metrics = original(run, logger)
    snapshots.append((before, counts(run, compiles)))
    unchanged.append(sum(np.array_equal(a, b) for a, b in zip(params_before, host(run.params))))
    return metrics

  monkeypatch.setattr(loop, "iteration", counted_iteration)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    loop.run(cfg)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)

  assert len(snapshots) == 3
  assert unchanged == [0, 0, 0], unchanged
  first = snapshots[0][1]
  assert first["sampler"] >= 1 and first["train_step"] >= 1 and first["logprobs"] >= 1, first
  jitted = ("sampler", "train_step", "logprobs")
  for i, (before, after) in enumerate(snapshots[1:], start=2):
    assert after == before, f"iteration {i} compiled: before {before}, after {after}"
    assert {k: after[k] for k in jitted} == {k: first[k] for k in jitted}, (i, after, first)
  # Between iterations: the first checkpoint save (after iteration 1) compiles orbax's per-shard slices
  # once; the second save must reuse them.
  assert snapshots[2][0] == snapshots[1][1], f"the second save compiled: {snapshots[2][0]} vs {snapshots[1][1]}"
