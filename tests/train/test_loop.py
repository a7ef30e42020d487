"""End-to-end trainer runs of a tiny random model: files and wiring, and exact resume after SIGKILL.

The random model earns no reward, so GRPO advantages would all be 0 and no update would change the
params (a resume test could then only fail on the data state): these runs use signed advantages (-1 on
every response), so every update depends on what was sampled, and assert that the params moved."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from simko_jax.train.checkpoint import load_policy, read_meta
from tests.faults import harness

ROOT = pathlib.Path(__file__).resolve().parents[2]


def overrides(out_dir, steps, **extra):
  args = [f"--config.out_dir={out_dir}", f"--config.train.steps={steps}",
          "--config.checkpoint.every=1", "--config.eval.enabled=False", "--config.algo.advantage=signed"]
  return args + [f"--config.{k}={v}" for k, v in extra.items()]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  """One JAX compilation cache for this module's launches (a launch after the first compiles less)."""
  return tmp_path_factory.mktemp("jax_cache_loop")


def launch(args, cache_dir):
  env = harness.env(cache_dir)
  return subprocess.Popen([sys.executable, "-m", "simko_jax.main", "--config",
                           "configs/tiny_random.py", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_to_end(args, cache_dir, timeout=300):
  proc = launch(args, cache_dir)
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-3000:]
  return out


def final_state(out_dir):
  model, _ = load_policy(str(out_dir))
  params = nnx.state(model, nnx.Param).to_pure_dict()
  step, meta = read_meta(os.path.join(out_dir, "checkpoints"))
  return step, np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)]), meta


def data_state(out_dir, step):
  path = os.path.join(out_dir, "checkpoints", str(step), "data")
  name = next(f for f in os.listdir(path) if not f.startswith("_"))
  with open(os.path.join(path, name)) as f:
    return json.load(f)


def test_tiny_run_writes_metrics_checkpoints_and_evals(tmp_path, cache_dir):
  out = run_to_end(overrides(tmp_path, 2, **{"eval.enabled": True}), cache_dir)
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [1, 2]
  for key in ("reward_mean", "accuracy", "response_length", "entropy", "clipfrac_high", "ppo_kl",
              "gate_fraction", "lambda_1", "lambda_2", "lambda_3", "rank1_prob", "rank5_prob",
              "sample_tokens_per_s", "train_tokens_per_s", "sample_s", "update_s", "grad_norm"):
    assert key in lines[0] and np.isfinite(lines[0][key]), key
  # Old log-probs are the trainer's own forward: the first of the step's two updates starts at ratio
  # 1 exactly, the second after one small update (|ppo_kl| ~1e-2). Old log-probs left at 0 would give
  # ~ln(256) = 5.5 (a random model over 256 byte tokens).
  assert abs(lines[0]["ppo_kl"]) < 0.05
  assert lines[0]["num_loss_tokens"] > 0
  for line in lines:
    assert line["grad_norm"] > 0 and line["loss"] != 0 and line["updates_skipped"] == 0, line
  harness.assert_params_moved(tmp_path, 2)
  assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit())[-1] == 2
  marker = json.loads((tmp_path / "checkpoints" / "tokenizer" / "simko_tokenizer_meta.json").read_text())
  assert marker["kind"] == "char"  # the run's tokenizer travels with its checkpoints
  for tag in ("before", "after"):
    result = json.loads((tmp_path / f"eval_{tag}.json").read_text())
    assert set(result["pass@k"]) == {"1", "2", "4"} and result["num_problems"] == 4
  assert (tmp_path / "tensorboard").is_dir()
  assert "eval before" in out


def test_resume_after_sigkill_is_exact(tmp_path, cache_dir):
  """N steps uninterrupted == killed with SIGKILL mid-run, then resumed to N: params and data."""
  steps = 4
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  run_to_end(overrides(straight, steps), cache_dir)

  proc = launch(overrides(killed, steps), cache_dir)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    ckpt = killed / "checkpoints"
    done = [int(p) for p in os.listdir(ckpt) if p.isdigit()] if ckpt.is_dir() else []
    if done and max(done) >= 2:
      break
    time.sleep(0.2)
  assert proc.poll() is None, "the run finished before it could be killed"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  interrupted_at = max(int(p) for p in os.listdir(killed / "checkpoints") if p.isdigit())
  assert interrupted_at < steps
  out = run_to_end(overrides(killed, steps), cache_dir)
  assert "resumed from checkpoint step" in out

  step_a, params_a, _ = final_state(straight)
  step_b, params_b, _ = final_state(killed)
  assert step_a == step_b == steps
  np.testing.assert_array_equal(params_a, params_b)
  assert data_state(straight, steps) == data_state(killed, steps)   # the next batch is the same
  # Params, Adam moments, PRNG key and data order all equal, and the resumed steps' updates moved
  # the params (the comparison above is not between two untouched initialisations).
  harness.assert_same_run(straight, killed, steps)
  harness.assert_params_moved(killed, steps)   # step `steps` is always trained after the resume
  metrics_a = [json.loads(l) for l in (straight / "metrics.jsonl").read_text().splitlines()]
  metrics_b = [json.loads(l) for l in (killed / "metrics.jsonl").read_text().splitlines()]
  last_a = {m["step"]: m["reward_mean"] for m in metrics_a}
  last_b = {m["step"]: m["reward_mean"] for m in metrics_b}
  assert last_a == last_b
