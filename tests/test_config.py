"""Config validation: every SimKO/GRPO field's range, unknown keys, cross-field rules, config files."""

import importlib
import pathlib
import subprocess
import sys

import pytest

from simko_jax.config import (FIELD_CHECKS, ConfigError, check_override_keys, default_config,
                              validate)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def with_value(path, value):
  cfg = default_config()
  section, _, key = path.rpartition(".")
  target = cfg
  for part in filter(None, section.split(".")):
    target = target[part]
  target[key] = value
  return cfg


def test_default_is_valid_and_every_field_has_a_check():
  validate(default_config())
  from simko_jax.config import _flatten
  assert set(dict(_flatten(default_config()))) == set(FIELD_CHECKS)


@pytest.mark.parametrize("path,value,allowed", [
    ("algo.alpha", 1.5, "[0.0, 1.0]"),
    ("algo.alpha", -0.1, "[0.0, 1.0]"),
    ("algo.lam", 0.9, "[1.0, 10.0]"),
    ("algo.top_k", 0, "integer in [1"),
    ("algo.tau", 1.2, "[0.0, 1.0]"),
    ("algo.tau", -0.2, "[0.0, 1.0]"),
    ("algo.clip_low", -0.1, "[0.0, 1.0]"),
    ("algo.clip_high", -0.1, "[0.0, 10.0]"),
    ("algo.method", "ppo", "'grpo', 'simko'"),
    ("algo.lam_on", "logits", "'advantage', 'ratio'"),
    ("algo.aggregation", "mean", "token_mean"),
    ("algo.kl_estimator", "k9", "'k1', 'k2', 'k3'"),
    ("rollout.temperature", 0.0, "(0.0, 10.0]"),
    ("rollout.group_size", 0, "integer in [1"),
    ("optim.learning_rate", 0.0, "(0.0, 1.0]"),
    ("model.dtype", "float16", "bfloat16"),
])
def test_out_of_range_values_name_field_value_and_range(path, value, allowed):
  with pytest.raises(ConfigError) as err:
    validate(with_value(path, value))
  message = str(err.value)
  assert f"config.{path}" in message and repr(value) in message and allowed in message


def test_top_k_larger_than_vocab_is_refused():
  validate(with_value("algo.top_k", 5), vocab_size=5)
  with pytest.raises(ConfigError, match=r"algo.top_k = 6 .*vocab size \(5\)"):
    validate(with_value("algo.top_k", 6), vocab_size=5)


def test_unknown_keys_are_refused_with_a_suggestion():
  cfg = default_config()
  cfg.algo.alpah = 0.1
  with pytest.raises(ConfigError, match=r"config.algo.alpah is not a known field.*algo.alpha"):
    validate(cfg)
  with pytest.raises(ConfigError, match=r"--config.algo.alpah .*--config.algo.alpha"):
    check_override_keys(["--config", "x.py", "--config.algo.alpah=0.1"])
  check_override_keys(["--config.algo.alpha=0.1"])


def test_cross_field_rules():
  with pytest.raises(ConfigError, match="mini_batch_prompts.*divisor of rollout.prompts_per_step"):
    validate(with_value("algo.mini_batch_prompts", 3))
  with pytest.raises(ConfigError, match="micro_batch_size.*divisor"):
    validate(with_value("algo.micro_batch_size", 5))
  with pytest.raises(ConfigError, match="group_size.*signed"):
    validate(with_value("rollout.group_size", 1))
  with pytest.raises(ConfigError, match="train_files"):
    validate(with_value("data.task", "files"))
  cfg = with_value("train.mesh_tensor", 3)
  with pytest.raises(ConfigError, match=r"device count \(8\)"):
    validate(cfg, num_devices=8)
  validate(with_value("train.mesh_tensor", 2), num_devices=8)


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "configs").glob("*.py")
                                        if p.name != "__init__.py" and not p.name.startswith("eval_")))
def test_every_shipped_training_config_validates(path):
  module = importlib.import_module(f"configs.{path[:-3]}")
  validate(module.get_config())


def test_cli_refuses_bad_value_before_building_anything():
  out = subprocess.run([sys.executable, "-m", "simko_jax.main", "--config", "configs/default.py",
                        "--config.algo.lam=0.5"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode != 0
  assert "config.algo.lam = 0.5 is invalid: allowed a number in [1.0, 10.0]" in out.stderr
  assert "Traceback" not in out.stderr
