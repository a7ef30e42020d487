"""Crash-safe, append-only JSONL store of finished problems: `<out_dir>/<benchmark>/generations.jsonl`.

One line = one problem with all its n samples and verdicts (a `ProblemRecord` as a JSON object), so a
problem is either fully on disk or absent. Invariants:
  * every append writes whole lines, then flush + fsync, before the next batch is sampled: a crash loses
    at most the batch in flight;
  * on open, a trailing partial line (a crash mid-write: no final newline, or not valid JSON) is cut off
    the file, so later appends start on a fresh line; complete lines are never rewritten;
  * a problem index appears at most once; if an (impossible by construction) duplicate is found on
    read, the first record wins.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable


@dataclasses.dataclass
class ProblemRecord:
  """All samples of one problem. Lists have length n = num_samples, in sample order.

  index: `Example.index` (row in the benchmark file, unique per benchmark).
  answers: canonical extracted answer per sample (normalised string) or None (nothing extracted).
  num_tokens: generated tokens per sample, including the stop token.
  truncated: finish_reason == length (hit max_new_tokens without a stop token).
  """
  index: int
  data_source: str
  ground_truth: str
  responses: list[str]
  correct: list[bool]
  answers: list[str | None]
  num_tokens: list[int]
  truncated: list[bool]

  @property
  def n(self) -> int:
    return len(self.correct)


class GenerationStore:
  """The generations file of one benchmark; `records` maps problem index -> ProblemRecord."""

  FILE_NAME = "generations.jsonl"

  def __init__(self, directory: str):
    os.makedirs(directory, exist_ok=True)
    self.path = os.path.join(directory, self.FILE_NAME)
    self.records: dict[int, ProblemRecord] = {}
    self.num_dropped_partial = 0
    self._load_and_repair()

  def _load_and_repair(self) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path, "rb") as f:
      data = f.read()
    good_end = 0  # byte offset just after the last complete, valid line
    for line in data.splitlines(keepends=True):
      if not line.endswith(b"\n"):
        break
      try:
        record = ProblemRecord(**json.loads(line))
      except (ValueError, TypeError):
        break  # torn write that happens to end in a newline byte: stop here too
      self.records.setdefault(record.index, record)
      good_end += len(line)
    if good_end < len(data):
      self.num_dropped_partial = 1
      with open(self.path, "r+b") as f:
        f.truncate(good_end)
        f.flush()
        os.fsync(f.fileno())

  def done(self, index: int) -> bool:
    return index in self.records

  def append(self, records: Iterable[ProblemRecord]) -> None:
    """Append whole lines and fsync them. Records already stored are skipped."""
    new = [r for r in records if r.index not in self.records]
    if not new:
      return
    payload = "".join(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n" for r in new)
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    for r in new:
      self.records[r.index] = r
