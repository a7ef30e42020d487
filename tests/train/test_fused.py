"""The fused `rl_train_step` (train/fused.py) against the phase-by-phase iteration (train/loop.py).

Same config, same seed, two runs: for each of two iterations (rewards: the arith verifier on device, or
the parity of the response length on device and through the host-pool callback, so that rewards and GRPO
advantages are not all zero), the fused program's sampled tokens, rewards
and advantages, the parameters after its update and every metric both paths log must equal the phase
path's within 1e-6 (tests/train/fused_equality.py does the runs). Topologies: the suite's 8 fake CPU
devices as a (data=2, fsdp=2, tensor=2) mesh (in this process), one device, and two JAX processes of 4
devices each (subprocesses). A scanned call of two iterations (`train.steps_per_call = 2`) must equal two
phase iterations. Configs that cannot take the fused step get one line naming the field.
"""

import json

import jax
import pytest

from configs import tiny_random
from simko_jax.config import ConfigError, validate
from tests import multiprocess
from tests.train import fused_equality

TOL = 1e-6


def check(result: dict, rollout: bool = True):
  for i, step in enumerate(result["steps"]):
    if rollout:
      assert step["tokens_equal"] and step["example_ids_equal"], (i, step)
      assert step["rewards"] <= TOL and step["advantages"] <= TOL, (i, step)
    assert step.get("params", 0.0) <= TOL, (i, step)
    bad = {k: v for k, v in step["metrics"].items() if v > TOL}
    assert not bad, (i, bad)
    assert {"loss", "grad_norm", "advantage_abs_mean"} <= set(step["metrics"]), step["metrics"]
  assert "params" in result["steps"][-1]
  if rollout:  # some update must move the parameters for the comparison to mean much
    assert any(step["grad_norm"] > 0 for step in result["steps"]), result["steps"]


@pytest.mark.skipif(jax.device_count() != 8, reason="expects the suite's 8 fake CPU devices")
def test_fused_step_equals_phase_path_on_the_2x2x2_mesh(tmp_path):
  out = tmp_path / "result.json"
  fused_equality.compare(str(out), str(tmp_path), fsdp=2, tensor=2, reward="parity_host", advantage="grpo")
  result = json.loads(out.read_text())
  check(result)
  assert "reward_mean" in result["steps"][0]["metrics"]
  assert 0 < result["steps"][0]["reward_mean"] < 1, "parity rewards: some groups informative"


@pytest.mark.slow
def test_fused_step_equals_phase_path_on_one_device(tmp_path):
  multiprocess.run_processes("tests.train.fused_equality",
                             [str(tmp_path / "r.json"), str(tmp_path), "--reward", "parity_device",
                              "--advantage", "grpo"],
                             str(tmp_path / "one"), num=1, devices=1, base_env=_no_coordinator(), timeout=900)
  check(json.loads((tmp_path / "r.json").read_text()))


@pytest.mark.slow
def test_fused_step_equals_phase_path_for_smollm2_on_one_device(tmp_path):
  """configs/default.py (SmolLM2-135M, arith with the plain answer on device, truncated = wrong), short."""
  multiprocess.run_processes("tests.train.fused_equality",
                             [str(tmp_path / "r.json"), str(tmp_path), "--base", "default", "--advantage", "grpo"],
                             str(tmp_path / "one"), num=1, devices=1, base_env=_no_coordinator(), timeout=900)
  check(json.loads((tmp_path / "r.json").read_text()))


@pytest.mark.slow
def test_fused_step_equals_phase_path_with_two_processes(tmp_path):
  multiprocess.run_processes("tests.train.fused_equality",
                             [str(tmp_path / "r.json"), str(tmp_path), "--fsdp", "2", "--tensor", "2"],
                             str(tmp_path / "proc"), num=2, devices=4, timeout=900)
  for i in range(2):
    check(json.loads((tmp_path / f"r.json.{i}").read_text()))


@pytest.mark.slow
def test_scanned_iterations_equal_phase_iterations(tmp_path):
  out = tmp_path / "result.json"
  fused_equality.compare(str(out), str(tmp_path), fsdp=2, tensor=2, steps_per_call=2)
  check(json.loads(out.read_text()), rollout=False)


def _no_coordinator():
  import os
  return {k: v for k, v in os.environ.items() if not k.startswith("SIMKO_")}


@pytest.mark.parametrize("field, value, named", [
    ("rollout.dynamic_sampling", True, "config.rollout.dynamic_sampling"),
    ("algo.ppo_epochs", 2, "config.algo.ppo_epochs"),
    ("algo.mini_batch_prompts", 1, "config.algo.mini_batch_prompts"),
])
def test_fused_on_where_it_cannot_apply_names_the_field(field, value, named):
  cfg = fused_equality.config("/tmp/unused")
  cfg.train.fused_step = "on"
  validate(cfg)  # applies: accepted
  section, key = field.split(".")
  cfg[section][key] = value
  with pytest.raises(ConfigError) as err:
    validate(cfg)
  message = str(err.value)
  assert "config.train.fused_step = 'on' is invalid" in message and named in message, message
  assert "\n" not in message


def test_steps_per_call_needs_the_fused_step_and_divides_checkpoints():
  cfg = tiny_random.get_config()  # two mini-batches: phase path only
  cfg.train.steps_per_call = 2
  with pytest.raises(ConfigError, match=r"config.train.steps_per_call = 2 is invalid.*mini_batch_prompts"):
    validate(cfg)
  cfg = fused_equality.config("/tmp/unused")
  cfg.train.steps_per_call, cfg.checkpoint.every = 2, 3
  with pytest.raises(ConfigError, match=r"config.train.steps_per_call = 2 is invalid.*checkpoint.every \(3\)"):
    validate(cfg)
  cfg.checkpoint.every = 4
  validate(cfg)
