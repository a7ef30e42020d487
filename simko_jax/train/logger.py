"""Per-step metrics: a JSONL file, TensorBoard events and a console progress bar with ETA.

Only process 0 writes (multi-host runs log once). The JSONL file is appended line by line and flushed,
so a killed run keeps every finished step; a resumed run appends after the last step it restored.
`out_dir` may be a `gs://` URL: the logs go through `storage.AppendFile` (whole-object rewrites there),
and TensorBoard events are written to a local directory and copied to `<out_dir>/tensorboard` after
every flush (tensorboardX cannot write to gs:// without TensorFlow; see docs/storage.md).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import jax

from simko_jax import storage

CONSOLE_KEYS = ("reward_mean", "accuracy", "response_length", "entropy", "lambda_1", "loss")


class MetricsLogger:
  """`log(step, metrics)` -> metrics.jsonl + TensorBoard + tqdm bar (process 0 only)."""

  def __init__(self, out_dir: str, total_steps: int, start_step: int = 0, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = str(storage.join(out_dir, "metrics.jsonl"))
    self._writer = None
    self._bar = None
    if not self.enabled:
      return
    storage.makedirs(out_dir)
    self._metrics = storage.AppendFile(self.path)
    self._events = storage.AppendFile(storage.join(out_dir, "events.log"))
    self._data_order = storage.AppendFile(storage.join(out_dir, "data_order.jsonl"))
    self._tb_sync = None
    if tensorboard:
      SummaryWriter = _import_summary_writer()
      tb_dir = str(storage.join(out_dir, "tensorboard"))
      if storage.is_remote(tb_dir):
        self._tb_sync = _TensorBoardSync(tb_dir)
        tb_dir = self._tb_sync.local_dir
      self._writer = SummaryWriter(tb_dir)
    from tqdm import tqdm
    self._bar = tqdm(total=total_steps, initial=start_step, desc="RL steps", dynamic_ncols=True)
    self._start = time.time()

  def log(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "time": round(time.time() - self._start, 3)}
    record.update({k: _plain(v) for k, v in metrics.items()})
    self._metrics.append(json.dumps(record) + "\n")
    if self._writer is not None:
      for key, value in record.items():
        if isinstance(value, (int, float)) and key != "step":
          self._writer.add_scalar(key, value, step)
      self._writer.flush()
      if self._tb_sync is not None:
        self._tb_sync.push()
    self._bar.set_postfix({k: f"{record[k]:.3g}" for k in CONSOLE_KEYS if k in record})
    self._bar.update(1)

  def data_order(self, step: int, example_ids: list) -> None:
    """The example ids `step` consumed, one line in data_order.jsonl (a redone step appears twice)."""
    if self.enabled:
      self._data_order.append(json.dumps({"step": int(step), "example_ids": example_ids}) + "\n")

  def event(self, message: str) -> None:
    """A notable event (skipped update, resume, preemption): printed and kept in events.log."""
    if not self.enabled:
      return
    line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
    (self._bar.write if self._bar else print)(line)
    self._events.append(line + "\n")

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._writer is not None:
      self._writer.close()
      if self._tb_sync is not None:
        self._tb_sync.push()
        self._tb_sync.cleanup()


class _TensorBoardSync:
  """Local event files mirrored to a remote `tensorboard/` dir: each file is uploaded when it grew.

  tensorboardX writes gs:// only through TensorFlow's gfile (not a dependency here), so the writer logs
  to a local temporary directory and `push()` copies changed event files up as whole objects.
  """

  def __init__(self, remote_dir: str):
    self.remote_dir = remote_dir
    self._tmp = tempfile.TemporaryDirectory(prefix="simko_tb_")
    self.local_dir = self._tmp.name
    self._sizes: dict[str, int] = {}

  def push(self) -> None:
    for name in sorted(os.listdir(self.local_dir)):
      local = os.path.join(self.local_dir, name)
      size = os.path.getsize(local)
      if os.path.isfile(local) and self._sizes.get(name) != size:
        with open(local, "rb") as f:
          storage.write_atomic(storage.join(self.remote_dir, name), f.read())
        self._sizes[name] = size

  def cleanup(self) -> None:
    self._tmp.cleanup()


def _plain(value: Any) -> Any:
  try:
    return float(value) if not isinstance(value, (int, str, bool)) else value
  except (TypeError, ValueError):
    return str(value)


def _import_summary_writer():
  """`tensorboardX.SummaryWriter`, imported without torch: tensorboardX's writer imports torch at module
  load when it is installed (2-4 s per process, for scalars we never pass as tensors). A `None` entry in
  sys.modules makes that `import torch` fail fast; it is removed again, so later real imports work."""
  import sys
  blocked = "torch" not in sys.modules
  if blocked:
    sys.modules["torch"] = None
  try:
    from tensorboardX import SummaryWriter
  finally:
    if blocked:
      del sys.modules["torch"]
  return SummaryWriter
