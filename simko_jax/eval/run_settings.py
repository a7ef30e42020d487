"""Which evaluation settings come from the evaluated run (its checkpoint's training config), and which
from the eval config: pure functions of (eval config, run config, command line).

  max_new_tokens  the command line (--config.max_new_tokens=N) > an eval config file that sets a value
                  other than `default_eval_config()`'s > the run's `config.eval.max_new_tokens` (a
                  trainer checkpoint whose config moved it off the trainer default) > the default.
                  So `--checkpoint runs/paper_x` evaluates with the response length the paper config
                  declares, and `configs/eval_quick.py` stays quick.
  dtype           "auto" (the default) = the run's `config.model.dtype` (float32 for HF / GGUF
                  sources); params are then kept in the run's `model.param_dtype`, so the numbers are
                  the trainer's. An explicit float32 / bfloat16 is used for compute and storage.
  expect_model    "" (no check) or a model source ("smollm2", a HF dir, a .gguf, or a preset name such
                  as "tiny_llama3"): the checkpoint must be that architecture (`checkpoint.SHAPE_KEYS`).
"""

from __future__ import annotations

from typing import Sequence

from simko_jax.eval.config import default_eval_config


def command_line_fields(argv: Sequence[str]) -> set[str]:
  """Eval config fields set on the command line: `--config.x=v` or `--config.x v` -> {"x"}."""
  fields = set()
  for arg in argv:
    if arg.startswith("--config."):
      fields.add(arg[len("--config."):].split("=", 1)[0])
  return fields


def unknown_field_error(fields: set[str]) -> str | None:
  """"--config.x is not a known field. Did you mean --config.y?" for the first unknown eval field."""
  import difflib
  known = list(_flatten(default_eval_config().to_dict()))
  for field in sorted(fields):
    if field not in known:
      close = difflib.get_close_matches(field, known, n=1)
      return f"--config.{field} is not a known field." + (f" Did you mean --config.{close[0]}?"
                                                          if close else "")
  return None


def _flatten(tree: dict, prefix: str = ""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


def resolve_max_new_tokens(cfg, train_config: dict, explicit: set[str]) -> tuple[int, str]:
  """(max_new_tokens, where it came from) by the precedence in the module doc."""
  if "max_new_tokens" in explicit:
    return int(cfg.max_new_tokens), "command line"
  if cfg.max_new_tokens != default_eval_config().max_new_tokens:
    return int(cfg.max_new_tokens), "eval config"
  run_value = (train_config.get("eval") or {}).get("max_new_tokens")
  if run_value and run_value != _trainer_default_max_new_tokens():
    return int(run_value), "run config eval.max_new_tokens"
  return int(cfg.max_new_tokens), "eval config default"


def _trainer_default_max_new_tokens() -> int:
  """The trainer's own default (sized for its in-training evals): a run that kept it did not choose a
  response length for benchmark evaluation, so the eval config's applies."""
  from simko_jax.config import default_config
  return int(default_config().eval.max_new_tokens)


def resolve_dtypes(cfg, train_config: dict) -> tuple[str, str]:
  """(compute dtype, param dtype) names by the rule in the module doc."""
  if cfg.dtype != "auto":
    return cfg.dtype, cfg.dtype
  model = train_config.get("model") or {}
  return model.get("dtype", "float32"), model.get("param_dtype", "float32")


def expected_model_config(spec: str) -> dict | None:
  """The HF-style config dict of `spec` (module doc), or None for ""."""
  if not spec:
    return None
  from simko_jax.models.config import PRESETS
  if spec in PRESETS:
    return PRESETS[spec]().to_hf_config()
  from simko_jax.train.policy_source import locate
  return locate(spec).model_config
