"""Entry point: `python -m simko_jax.main --config configs/<x>.py [--config.a.b=value ...]`.

Loads and validates the config before anything is built or compiled, initialises JAX's multi-process
runtime when launched as one of several processes, then hands off to the RL training loop.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from simko_jax.config import ConfigError, apply_runlocal, check_override_keys, validate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.")
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "Build the model, optimizer and train step abstractly on a fake mesh of the "
    "config's target size, print per-device memory and FLOPs, warn if it will not fit, and exit "
    "(see simko_jax/train/dry_run.py). Needs no checkpoint and no accelerator.")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax / JAX info chatter would drown the progress bar
  cfg = _CONFIG.value
  try:
    validate(apply_runlocal(cfg))
  except ConfigError as err:
    sys.exit(f"error: {err}")
  if _DRY_RUN.value:
    from simko_jax.train import dry_run  # noqa: PLC0415 (sets up fake devices before JAX starts)
    try:
      dry_run.main(cfg)
    except (ConfigError, ValueError) as err:
      sys.exit(f"error: {err}")
    return
  from simko_jax.train import preemption  # noqa: PLC0415 (numpy only: installs the handler early)
  # SIGTERM from here on is an agreed stop (train/preemption.py), also during start-up and build.
  with preemption.on_sigterm() as stop:
    _train(cfg, stop)


def _train(cfg, stop):
  """Multi-process start-up, then the RL loop; known failures end as one `error:` line."""
  from simko_jax.train import distributed  # noqa: PLC0415
  try:
    distributed.maybe_initialize()  # before anything touches a JAX backend
  except distributed.DistributedConfigError as err:
    sys.exit(f"error: {err}")
  from simko_jax.data.sources import DataError  # noqa: PLC0415 (heavy imports after validation)
  from simko_jax.models.errors import ModelLoadError  # noqa: PLC0415
  from simko_jax.train import loop  # noqa: PLC0415
  from simko_jax.train.checkpoint import CheckpointError  # noqa: PLC0415
  try:
    loop.run(cfg, stop)
  except (ConfigError, DataError, CheckpointError, ModelLoadError, OSError, loop.NonFiniteError) as err:
    sys.exit(f"error: {err}")


def entry():
  sys.path.insert(0, os.getcwd())  # so config files can import each other (configs.default)
  try:
    check_override_keys(sys.argv[1:])  # a clean message instead of a flag-parser traceback
  except ConfigError as err:
    sys.exit(f"error: {err}")
  app.run(main)


if __name__ == "__main__":
  entry()
