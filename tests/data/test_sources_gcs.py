"""Training data read straight from a bucket (fake-gcs-server): the same examples as the local file."""

import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simko_jax import storage
from simko_jax.config import default_config
from simko_jax.data.sources import DataError, read_examples
from simko_jax.train import tasks

def _fields(examples):
  return [{k: v for k, v in dataclasses.asdict(e).items() if k != "path"} for e in examples]


ROWS = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]


def test_jsonl_and_parquet_from_gs_equal_local(gcs, tmp_path):
  text = "".join(json.dumps(r) + "\n" for r in ROWS)
  (tmp_path / "train.jsonl").write_text(text)
  remote = f"{gcs.bucket}/data/train.jsonl"
  storage.write_atomic(remote, text)
  local, _ = read_examples(str(tmp_path / "train.jsonl"), split="train")
  got, stats = read_examples(remote, split="train")
  assert _fields(got) == _fields(local) and got[0].path == remote
  assert stats.num_rows == 5

  table = pa.table({"data_source": ["x"] * 2, "prompt": [[{"role": "user", "content": "1+1?"}]] * 2,
                    "reward_model": [{"ground_truth": "2", "style": "rule"}] * 2})
  pq.write_table(table, tmp_path / "t.parquet")
  storage.write_atomic(f"{gcs.bucket}/data/t.parquet", (tmp_path / "t.parquet").read_bytes())
  want, _ = read_examples(str(tmp_path / "t.parquet"))
  got, _ = read_examples(f"{gcs.bucket}/data/t.parquet")
  assert _fields(got) == _fields(want) and len(got) == 2

  cfg = default_config()  # the trainer's own path: config.data.train_files = a gs:// URL
  cfg.data.task, cfg.data.train_files = "files", remote
  assert [e.ground_truth for e in tasks.train_examples(cfg.data, 0)] == [r["answer"] for r in ROWS]


def test_missing_object_and_eval_guard(gcs):
  with pytest.raises(DataError, match="no such file"):
    read_examples(f"{gcs.bucket}/data/missing.jsonl")
  with pytest.raises(DataError, match="refusing"):
    read_examples(f"{gcs.bucket}/eval/math500.jsonl", split="train")
