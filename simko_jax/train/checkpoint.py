"""Orbax checkpoints of a training run: params, optimizer state, step, PRNG, data iterator, config.

Layout of `<out_dir>/checkpoints/<step>/` (one Orbax `CheckpointManager` step, Composite items):
  params   StandardSave  the policy params as a pure nested dict (restorable without the optimizer)
  train    StandardSave  {"opt_state": optax state, "rng": uint32 key data}
  data     JsonSave      the prompt iterator's state (`PromptBatchIterator.get_state()`)
  meta     JsonSave      {"step", "config" (the run's ConfigDict), "model_config" (HF-style dict),
                          "tokenizer" (where the tokenizer comes from)}

Orbax writes each step into a temporary directory and renames it when complete (in a gs:// bucket,
which has no rename: into `<step>/`, committed by a final `commit_success.txt`), so a process killed
mid-save leaves no step that `latest_step()` would return. The directory may be local or gs://
(`simko_jax.storage`). If the newest complete step still cannot be
read (a corrupted file), `restore` falls back to the previous one, says so, and renames the unreadable
newer steps to `<step>.unreadable` (kept for inspection) so the resumed run can write those steps again.
A checkpoint written for a different model shape is refused before any array is read; one written
before the fused decoder layout (issue 22) is converted on restore (`checkpoint_layout`). Any failure of a
save (disk full, unwritable directory), including one of an async save that surfaces later, raises
`CheckpointError` naming the step; the steps already committed are untouched.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from simko_jax import storage
from simko_jax.train import checkpoint_layout

log = logging.getLogger(__name__)

# Model-config entries that change parameter shapes or names: a checkpoint must agree on all of them.
SHAPE_KEYS = ("architectures", "model_type", "vocab_size", "hidden_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
              "tie_word_embeddings", "attention_bias", "mlp_bias")


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable or does not fit the model; the message says which."""


class RunCheckpointer:
  """Saves and restores a training run under `<out_dir>/checkpoints` (see module doc)."""

  def __init__(self, directory: str, *, keep: int = 3, every: int = 10, async_save: bool = True):
    self.directory = storage.absolute(directory)  # a local path or a gs:// URL, as a string
    try:
      # One probe per process: hosts sharing the directory must not delete each other's probe.
      storage.check_writable(self.directory, what="checkpoint directory")
    except storage.StorageError as err:
      if storage.is_remote(self.directory):  # names the bucket and the fix
        raise CheckpointError(str(err)) from err
      raise CheckpointError(f"checkpoint directory {self.directory!r} is not writable: "
                            f"{err.__cause__}") from err
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=every, enable_async_checkpointing=async_save,
        create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self._in_flight: int | None = None  # the step of an async save that may still be writing
    self._failed = False  # a failed save has been reported

  def check_free_space(self, nbytes: int) -> None:
    """Refuses to start when the disk cannot hold one more checkpoint of about `nbytes` bytes."""
    free = storage.free_bytes(self.directory)  # None on a bucket: no local disk to fill
    if free is not None and free < nbytes:
      raise CheckpointError(
          f"checkpoint directory {self.directory!r} has {free / 2**20:.1f} MiB free but one checkpoint "
          f"needs about {nbytes / 2**20:.1f} MiB: free disk space or set config.out_dir elsewhere")

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, params, opt_state, rng_key, data_state: dict, meta: dict,
           *, force: bool = False) -> bool:
    """Starts a (possibly async) save; returns whether a save happened at this step."""
    args = ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        train=ocp.args.StandardSave({"opt_state": opt_state,
                                     # numpy: a single-device array cannot be saved multi-host
                                     "rng": np.asarray(jax.random.key_data(rng_key))}),
        data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave({**meta, "step": int(step)}))
    if force or self.manager.should_save(step):
      self.wait()  # a failed async save of an earlier step is reported as that step's failure
    try:
      saved = self.manager.save(step, args=args, force=force)
    except Exception as err:  # noqa: BLE001 - OSError, tensorstore ValueError, ...: all mean "not saved"
      raise CheckpointError(f"saving step {step} to {self.directory!r} failed: {err}. "
                            f"Earlier checkpoints are untouched (latest complete step: "
                            f"{self.latest_step()}).") from err
    if saved:
      self._in_flight = step
    return saved

  def wait(self) -> None:
    """Blocks until an in-flight async save has been committed; CheckpointError if it failed."""
    step, self._in_flight = self._in_flight, None
    try:
      self.manager.wait_until_finished()
    except Exception as err:  # noqa: BLE001
      self._failed = True
      raise CheckpointError(f"saving step {step} to {self.directory!r} failed while writing in the "
                            f"background: {err}. Earlier checkpoints are untouched (latest complete "
                            f"step: {self.latest_step()}).") from err

  def close(self) -> None:
    try:
      self.wait()
    finally:
      try:
        self.manager.close()
      except Exception as err:  # noqa: BLE001 - Orbax re-raises a failed async save once more here
        if not self._failed:
          raise CheckpointError(f"closing the checkpoints in {self.directory!r} failed: {err}") from err
        log.warning("checkpoint manager close after a failed save: %s", err)

  def restore(self, abstract_params, abstract_opt_state, abstract_rng, step: int | None = None, *,
              model_config: dict | None = None) -> tuple[int, Any, Any, Any, dict, dict]:
    """Restores (step, params, opt_state, rng_key, data_state, meta) onto the abstract targets' shardings.

    `abstract_*` are pytrees of `jax.ShapeDtypeStruct` with `.sharding` (e.g. from `jax.eval_shape`
    plus the run's shardings); restoring onto another mesh shape than the saving run's works because
    Orbax reshards to the target. With `step=None`, the newest readable step is used (unreadable newer
    steps are renamed `<step>.unreadable`). With `model_config` (HF-style dict), a checkpoint whose
    `meta.model_config` differs in a `SHAPE_KEYS` entry raises CheckpointError before arrays are read.
    """
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      raise CheckpointError(f"no complete checkpoint in {self.directory!r}")
    errors = []
    for s in steps:
      try:
        meta = self.manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
      except Exception as err:  # noqa: BLE001 - an unreadable meta is a corrupt step: fall back
        errors.append(f"step {s}: {type(err).__name__}: {str(err)[:300]}")
        log.warning("checkpoint step %s in %s is unreadable (%s); trying an older one", s,
                    self.directory, err)
        continue
      step_dir = storage.join(self.directory, str(s))
      _check_model(meta, model_config, str(step_dir))
      layout_cfg = _unfused_layout_config(meta, step_dir)  # None: the checkpoint has today's layout
      params_target, opt_target = abstract_params, abstract_opt_state
      if layout_cfg is not None:
        params_target = checkpoint_layout.unfused_target(layout_cfg, abstract_params)
        opt_target = checkpoint_layout.unfused_target(layout_cfg, abstract_opt_state)
      try:
        restored = self.manager.restore(s, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(params_target),
            train=ocp.args.StandardRestore({"opt_state": opt_target,
                                            "rng": abstract_rng}),
            data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
      except Exception as err:  # noqa: BLE001 - any unreadable step falls back to the previous one
        errors.append(f"step {s}: {type(err).__name__}: {str(err)[:300]}")
        log.warning("checkpoint step %s in %s is unreadable (%s); trying an older one", s,
                    self.directory, err)
        continue
      rng = jax.random.wrap_key_data(restored["train"]["rng"])
      if step is None and s != steps[0]:
        self._set_aside([u for u in steps if u > s])
      params, opt_state = restored["params"], restored["train"]["opt_state"]
      if layout_cfg is not None:
        params = checkpoint_layout.convert_to_fused(layout_cfg, params, abstract_params)
        opt_state = checkpoint_layout.convert_to_fused(layout_cfg, opt_state, abstract_opt_state)
        log.warning("checkpoint step %s in %s: %s; converted to the fused layout on restore", s,
                    self.directory, checkpoint_layout.FORMAT_CHANGE)
      return s, params, opt_state, rng, restored["data"], restored["meta"]
    raise CheckpointError(f"no readable checkpoint in {self.directory!r}: " + "; ".join(errors))

  def _set_aside(self, steps: list[int]) -> None:
    """Renames unreadable steps to `<step>.unreadable`, so that the resumed run can save them again."""
    if jax.process_index() == 0:
      for s in steps:
        src = str(storage.join(self.directory, str(s)))
        dst = f"{src}.unreadable"
        if storage.exists(dst):
          dst = f"{dst}.{os.getpid()}"
        storage.rename(src, dst)
        log.warning("moved unreadable checkpoint step %s to %s", s, dst)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes("simko_set_aside_unreadable_steps")
    self.manager.reload()


def _unfused_layout_config(meta: dict, step_dir) -> Any:
  """The `ModelConfig` of a checkpoint step saved in the old unfused layer layout (to convert it), None
  for today's layout; CheckpointError when an old-layout step does not say its model."""
  if not checkpoint_layout.saved_layers_unfused(step_dir):
    return None
  from simko_jax.models.config import ModelConfig
  saved = meta.get("model_config") if isinstance(meta, dict) else None
  try:
    return ModelConfig.from_hf_config(saved)
  except Exception as err:  # noqa: BLE001 - no or a damaged model_config: nothing to convert with
    raise CheckpointError(f"the checkpoint {step_dir} {checkpoint_layout.FORMAT_CHANGE} and its meta item "
                          f"has no usable model_config to convert it with ({err}): load it with a "
                          "simko_jax release before issue 22 and export it (python -m simko_jax.export)") from err


def _check_model(meta: dict, model_config: dict | None, where: str) -> None:
  saved = meta.get("model_config") if isinstance(meta, dict) else None
  if not model_config or not saved:
    return
  diff = {k: (saved.get(k), model_config.get(k)) for k in SHAPE_KEYS
          if k in saved and k in model_config and saved[k] != model_config[k]}
  if diff:
    detail = ", ".join(f"{k}: checkpoint {a!r} vs this run {b!r}" for k, (a, b) in diff.items())
    raise CheckpointError(f"the checkpoint {where} was written for a different model ({detail}): "
                          "use the model config that wrote it, or a new config.out_dir")


def read_meta(directory: str, step: int | None = None) -> tuple[int, dict]:
  """(step, meta dict) of a checkpoint directory without touching the arrays."""
  directory = storage.absolute(directory)
  try:
    found = storage.isdir(directory)
  except Exception as err:  # noqa: BLE001 - an unreachable bucket: one line, not a gcsfs traceback
    raise CheckpointError(storage.describe_failure(directory, err, "checkpoint directory")) from err
  if not found:
    raise CheckpointError(f"checkpoint directory {directory!r} does not exist")
  manager = ocp.CheckpointManager(directory)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise CheckpointError(f"no complete checkpoint in {directory!r}")
  meta_dir = storage.join(directory, str(step), "meta")
  path = meta_dir / "metadata"
  if not path.exists():
    path = next((c for c in sorted(meta_dir.iterdir()) if not c.is_dir()), path)
  return step, json.loads(path.read_text())


def load_policy(path: str, step: int | None = None, dtype: Any = None, mesh=None):
  """(model, tokenizer) from a run directory, its `checkpoints/` dir, a HF dir, a `.gguf` file or
  "smollm2" (see `simko_jax.train.policy_source`: only the params item is read, straight onto `mesh`;
  the tokenizer comes from the checkpoint's own tokenizer files when it has them)."""
  from simko_jax.train import policy_source
  source = policy_source.locate(path, step)
  model = policy_source.load_model(source, dtype=dtype, mesh=mesh)
  return model, policy_source.load_tokenizer_of(source)
