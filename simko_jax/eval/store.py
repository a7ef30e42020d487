"""Crash-safe, append-only JSONL store of finished problems: `<out_dir>/<benchmark>/generations.jsonl`.

One line = one problem with all its n samples and verdicts (a `ProblemRecord` as a JSON object), so a
problem is either fully on disk or absent. Invariants:
  * every append writes whole lines, then flush + fsync, before the next batch is sampled: a crash loses
    at most the batch in flight;
  * on open, a trailing partial line (a crash mid-write: no final newline, or not valid JSON) is cut off
    the file, so later appends start on a fresh line; complete lines are never rewritten;
  * a problem index appears at most once; if an (impossible by construction) duplicate is found on
    read, the first record wins.

On an object store (`directory` is a `gs://` URL) there is no append and no truncate, so the store is a
directory of immutable chunk objects instead: `<benchmark>/generations/<seq:06d>.jsonl`, one per
`append` call, each uploaded whole (GCS makes an object visible only once its upload completed, so a
crash loses at most the chunk in flight, as locally). On open all chunks are read back in `seq` order;
a chunk that does not parse completely (cannot happen short of outside damage) is ignored as a whole
and counted in `num_dropped_partial`, and the next append uses a fresh `seq`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable

from simko_jax import storage


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
  CHUNK_DIR = "generations"  # remote layout (see module doc)

  def __init__(self, directory: str):
    self.remote = storage.is_remote(directory)
    storage.makedirs(directory)
    self.path = str(storage.join(directory, self.CHUNK_DIR if self.remote else self.FILE_NAME))
    self.records: dict[int, ProblemRecord] = {}
    self.num_dropped_partial = 0
    self._next_chunk = 0
    if self.remote:
      self._load_chunks()
    else:
      self._load_and_repair()

  def _load_chunks(self) -> None:
    if not storage.isdir(self.path):
      return
    for name in storage.listdir(self.path):
      if not (name.endswith(".jsonl") and name[:-len(".jsonl")].isdigit()):
        continue
      self._next_chunk = max(self._next_chunk, int(name[:-len(".jsonl")]) + 1)
      data = storage.read_bytes(storage.join(self.path, name))
      try:
        chunk = [ProblemRecord(**json.loads(line)) for line in data.splitlines() if line.strip()]
      except (ValueError, TypeError):
        self.num_dropped_partial += 1
        continue
      for record in chunk:
        self.records.setdefault(record.index, record)

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
    if self.remote:
      storage.write_atomic(storage.join(self.path, f"{self._next_chunk:06d}.jsonl"), payload)
      self._next_chunk += 1
    else:
      self._append_local(payload)
    for r in new:
      self.records[r.index] = r

  def _append_local(self, payload: str) -> None:
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
