"""GenerationStore in a bucket (fake-gcs-server): immutable chunk objects instead of an appended file."""

import dataclasses

from simko_jax import storage
from simko_jax.eval.store import GenerationStore, ProblemRecord


def _record(i):
  return ProblemRecord(index=i, data_source="math", ground_truth=str(i), responses=[f"r{i}", "x"],
                       correct=[True, False], answers=[str(i), None], num_tokens=[3, 4],
                       truncated=[False, True])


def test_remote_store_appends_chunks_and_resumes(gcs):
  directory = f"{gcs.bucket}/eval-store/math500"
  store = GenerationStore(directory)
  store.append([_record(0), _record(1)])
  store.append([_record(1), _record(2)])  # 1 is already stored: skipped
  assert storage.listdir(store.path) == ["000000.jsonl", "000001.jsonl"]

  reopened = GenerationStore(directory)
  assert sorted(reopened.records) == [0, 1, 2] and reopened.num_dropped_partial == 0
  assert dataclasses.asdict(reopened.records[2]) == dataclasses.asdict(_record(2))

  # A damaged chunk (cannot come from our own writes: uploads are all-or-nothing) is ignored whole.
  storage.write_atomic(storage.join(store.path, "000002.jsonl"), '{"index": 7, "oops')
  damaged = GenerationStore(directory)
  assert sorted(damaged.records) == [0, 1, 2] and damaged.num_dropped_partial == 1
  damaged.append([_record(3)])
  assert "000003.jsonl" in storage.listdir(store.path)  # never overwrites an existing chunk
  assert sorted(GenerationStore(directory).records) == [0, 1, 2, 3]
