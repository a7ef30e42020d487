"""Bad configs are refused before anything is built or compiled, with a message naming the field, the
value, the allowed range and the fix: every field's out-of-range values, unknown keys, meshes that do
not divide the device count, and batch sizes that do not divide by the group size or the mesh."""

import re
import subprocess
import sys

import jax
import pytest

from simko_jax.config import FIELD_CHECKS, ConfigError, default_config, validate
from simko_jax.models.config import PRESETS
from simko_jax.train import setup
from tests.faults import harness

# Candidates tried on every field; the ones its check refuses (and ml_collections' types allow) must be
# refused by validate() naming the field. Numbers straddle every range's ends.
CANDIDATES = [-10**9, -2, -1, -0.5, 0, 0.0, 0.5, 1, 1.5, 2**32, 10**9, 1e9, "bogus", True, None]


def _assign(cfg, path, value) -> bool:
  section, _, key = path.rpartition(".")
  target = cfg
  for part in filter(None, section.split(".")):
    target = target[part]
  try:
    target[key] = value
  except (TypeError, ValueError):  # ml_collections refuses the type itself (a flag-parse error)
    return False
  return True


@pytest.mark.parametrize("path", sorted(FIELD_CHECKS))
def test_every_field_refuses_out_of_range_values_by_name(path):
  refused = 0
  for value in CANDIDATES:
    cfg = default_config()
    if not _assign(cfg, path, value) or FIELD_CHECKS[path].ok(cfg_value(cfg, path)):
      continue  # (ml_collections converts some types on assignment: True -> 1.0 for a float field)
    with pytest.raises(ConfigError) as err:
      validate(cfg)
    message = str(err.value)
    assert message.startswith(f"config.{path} = {cfg_value(cfg, path)!r} is invalid: allowed "), message
    assert FIELD_CHECKS[path].allowed in message
    refused += 1
  assert refused, f"no out-of-range candidate for {path}"


def cfg_value(cfg, path):
  for part in path.split("."):
    cfg = cfg[part]
  return cfg


def test_random_preset_choices_match_the_model_presets():
  cfg = default_config()
  for name in PRESETS:
    cfg.model.random_preset = name
    validate(cfg)
  cfg.model.random_preset = "tiny_llama4"
  with pytest.raises(ConfigError, match=r"config.model.random_preset = 'tiny_llama4' is invalid: "
                                        r"allowed one of \['tiny_llama3', 'tiny_qwen2', 'tiny_qwen3', 'tiny_gemma2', "
                                        r"'tiny_gemma3'\]"):
    validate(cfg)


def test_unknown_keys_in_a_config_and_on_the_command_line(tmp_path):
  cfg = default_config()
  cfg.optim.learning_rat = 1e-3
  with pytest.raises(ConfigError, match=r"^config.optim.learning_rat is not a known field. Did you "
                                        r"mean config.optim.learning_rate\?$"):
    validate(cfg)
  out = subprocess.run([sys.executable, "-m", "simko_jax.main", "--config", "configs/tiny_random.py",
                        "--config.algo.alpah=0.1"], cwd=harness.ROOT, env=harness.env(),
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert out.stderr.strip() == ("error: --config.algo.alpah is not a known field. Did you mean "
                                "--config.algo.alpha?")


@pytest.mark.parametrize("changes, field, fix", [
    ({"algo.micro_batch_size": 3}, "algo.micro_batch_size",
     "a divisor of mini_batch_prompts x group_size (4)"),
    ({"rollout.prompts_per_step": 3, "algo.mini_batch_prompts": 2}, "algo.mini_batch_prompts",
     "a divisor of rollout.prompts_per_step (3)"),
    ({"rollout.sample_chunk_prompts": 3}, "rollout.sample_chunk_prompts",
     "0 or a divisor of rollout.prompts_per_step (2)"),
    ({"rollout.group_size": 1}, "rollout.group_size", "Use algo.advantage='signed'"),
    ({"train.mesh_tensor": 3}, "train.mesh_tensor", "device count (8)"),
    ({"train.mesh_data": 4}, "train.mesh_data", "set config.train.mesh_data=-1"),
    ({"algo.micro_batch_size": 2}, "algo.micro_batch_size",  # 2 responses over 8 data-parallel devices
     "a multiple of the mesh's data x fsdp size per process (8)"),
])
def test_batch_and_mesh_mismatches_are_refused_before_building(tmp_path, monkeypatch, changes, field,
                                                               fix):
  """build_run on this process's 8 CPU devices: refused before the model, data or out_dir exist."""
  from configs.tiny_random import get_config
  assert jax.device_count() == 8
  cfg = get_config()
  cfg.out_dir = str(tmp_path / "run")
  cfg.algo.micro_batch_size = 4
  for path, value in changes.items():
    assert _assign(cfg, path, value)
  built = []
  monkeypatch.setattr(setup, "load_model_and_tokenizer", lambda *a, **k: built.append(1))
  monkeypatch.setattr(setup.tasks, "train_examples", lambda *a, **k: built.append(1))
  with pytest.raises(ConfigError) as err:
    setup.build_run(cfg)
  assert str(err.value).startswith(f"config.{field} = ") and fix in str(err.value), str(err.value)
  assert not built and not (tmp_path / "run").exists()


def test_cli_mesh_that_does_not_divide_the_devices(tmp_path):
  rc, text = harness.run(tmp_path / "run", **{"train.mesh_tensor": 3})
  assert rc == 1 and "Traceback" not in text, text[-3000:]
  assert re.fullmatch(r"error: config.train.mesh_tensor = 3 is invalid: allowed a mesh \(data x fsdp "
                      r"x tensor\) whose product equals the device count \(1\)\..*dividing 1\.",
                      text.strip().splitlines()[-1])
