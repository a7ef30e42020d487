"""Per-step metrics: a JSONL file, TensorBoard events and a console progress bar with ETA.

Only process 0 writes (multi-host runs log once). The JSONL file is appended line by line and flushed,
so a killed run keeps every finished step; a resumed run appends after the last step it restored.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax

CONSOLE_KEYS = ("reward_mean", "accuracy", "response_length", "entropy", "lambda_1", "loss")


class MetricsLogger:
  """`log(step, metrics)` -> metrics.jsonl + TensorBoard + tqdm bar (process 0 only)."""

  def __init__(self, out_dir: str, total_steps: int, start_step: int = 0, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(out_dir, "metrics.jsonl")
    self._writer = None
    self._bar = None
    if not self.enabled:
      return
    os.makedirs(out_dir, exist_ok=True)
    if tensorboard:
      SummaryWriter = _import_summary_writer()
      self._writer = SummaryWriter(os.path.join(out_dir, "tensorboard"))
    from tqdm import tqdm
    self._bar = tqdm(total=total_steps, initial=start_step, desc="RL steps", dynamic_ncols=True)
    self._start = time.time()

  def log(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "time": round(time.time() - self._start, 3)}
    record.update({k: _plain(v) for k, v in metrics.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()
    if self._writer is not None:
      for key, value in record.items():
        if isinstance(value, (int, float)) and key != "step":
          self._writer.add_scalar(key, value, step)
      self._writer.flush()
    self._bar.set_postfix({k: f"{record[k]:.3g}" for k in CONSOLE_KEYS if k in record})
    self._bar.update(1)

  def event(self, message: str) -> None:
    """A notable event (skipped update, resume, preemption): printed and kept in events.log."""
    if not self.enabled:
      return
    line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
    (self._bar.write if self._bar else print)(line)
    with open(os.path.join(os.path.dirname(self.path), "events.log"), "a") as f:
      f.write(line + "\n")

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._writer is not None:
      self._writer.close()


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
