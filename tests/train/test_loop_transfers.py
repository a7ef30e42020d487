"""One RL iteration moves each array across host <-> device once (train/loop.py, train/batch.py).

A real tiny run (configs/tiny_random.py on the suite's 8 fake CPU devices; off-policy with a KL term,
so old and reference log-probs run; dynamic sampling with one refill round and one prompt per sampler
call, so four sampler calls and a device gather of the chosen rows). Its second iteration runs with
implicit device -> host transfers disallowed throughout, and every transfer disallowed in the phases
that must stay on device (batch assembly, log-probs, updates); the explicit transfers are counted:
  device -> host: one read per sampler call of the verifier's inputs (response ids [B, R], lengths [B],
                  finish reasons [B]) and one read of the metrics (scalars) at the end;
  host -> device: the prompts (and their mask) per sampler call, the chosen rows' indices and rewards
                  once, and one index array per log-prob chunk and per update.
"""

import jax
import numpy as np
import pytest

from configs import tiny_random
from simko_jax.train import batch as batch_lib
from simko_jax.train import loop
from simko_jax.train.setup import build_run

G, R = 8, 16


def guarded(fn):
  """`fn` with every implicit transfer, in either direction, an error."""
  def run(*args, **kw):
    with jax.transfer_guard("disallow"):
      return fn(*args, **kw)
  return run


def recorded(kind, fn, events, arg):
  def run(*args, **kw):
    events.append((kind, [(np.shape(x), np.dtype(getattr(x, "dtype", None) or np.result_type(x)).name)
                          for x in jax.tree.leaves(args[arg])]))
    return fn(*args, **kw)
  return run


@pytest.mark.skipif(jax.device_count() != 8, reason="expects the suite's 8 fake CPU devices")
def test_an_iteration_moves_each_array_across_once(tmp_path, monkeypatch):
  cfg = tiny_random.get_config()
  cfg.out_dir = str(tmp_path)
  cfg.eval.enabled = False
  cfg.rollout.group_size = cfg.algo.micro_batch_size = G  # one response per device
  cfg.rollout.max_new_tokens = R
  cfg.rollout.sample_chunk_prompts = 1
  cfg.rollout.dynamic_sampling, cfg.rollout.max_refill_rounds = True, 1
  cfg.algo.kl_coef = 0.05
  run = build_run(cfg)
  run.pool.score = lambda items: [0.0] * len(items)  # no group is informative: the refill round runs
  for name in ("_assemble", "_updates"):
    monkeypatch.setattr(loop, name, guarded(getattr(loop, name)))
  for name in ("fill_logprobs", "batch_summary"):
    monkeypatch.setattr(batch_lib, name, guarded(getattr(batch_lib, name)))
  events = []
  monkeypatch.setattr(jax, "device_get", recorded("get", jax.device_get, events, 0))
  monkeypatch.setattr(jax, "device_put", recorded("put", jax.device_put, events, 0))
  try:
    for step in range(2):
      events.clear()
      with jax.transfer_guard_device_to_host("disallow"):
        metrics = loop.iteration(run, logger=None)
      run.step += 1
  finally:
    run.close()

  sampler_calls = 4                            # 2 rounds x 2 chunks of one prompt
  gets = [leaves for kind, leaves in events if kind == "get"]
  assert gets[:sampler_calls] == [[((G, R), "int32"), ((G,), "int32"), ((G,), "int32")]] * sampler_calls
  assert len(gets) == sampler_calls + 1 and all(shape == () for shape, _ in gets[-1]), gets[-1]
  puts = [leaves[0] for kind, leaves in events if kind == "put"]
  prompts, rest = puts[:2 * sampler_calls], puts[2 * sampler_calls:]
  assert all(shape[0] == 1 and dtype == "int32" for shape, dtype in prompts), prompts
  rows = 2 * G                                 # the step's 2 prompts x G
  assert rest == [((rows,), "int32"),          # the chosen rows of the 4 calls' outputs
                  ((rows,), "float32"),        # their rewards
                  ((G,), "int32"), ((G,), "int32"),           # 2 log-prob chunks (old + ref each)
                  ((1, G), "int32"), ((1, G), "int32")], rest  # 2 updates of one micro-batch
  assert metrics["groups_padded"] == 2 and metrics["reward_mean"] == 0.0
  assert np.isfinite(metrics["loss"]) and metrics["num_loss_tokens"] > 0
