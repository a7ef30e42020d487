"""simko_jax/storage.py on local paths and on a real GCS stand-in (fake-gcs-server, `gcs` fixture)."""

import os
import pathlib

import pytest

from simko_jax import storage

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_path_kinds():
  assert storage.is_remote("gs://b/run") and not storage.is_remote("runs/x")
  assert not storage.is_remote("/abs/x")
  assert storage.absolute("runs/x") == os.path.abspath("runs/x")
  assert storage.absolute("gs://b/run/") == "gs://b/run/"  # never turned into a local path
  assert storage.bucket_of("gs://bkt/a/b") == "gs://bkt" and storage.bucket_of("x/y") == "x/y"
  assert str(storage.join("gs://b/run", "checkpoints", "3")) == "gs://b/run/checkpoints/3"


def test_local_write_append_rename(tmp_path):
  target = tmp_path / "d" / "f.json"
  storage.makedirs(target.parent)
  storage.write_atomic(str(target), "{}")
  storage.write_atomic(str(target), b"[1]")
  assert target.read_text() == "[1]" and os.listdir(target.parent) == ["f.json"]  # no temp left
  log = storage.AppendFile(str(tmp_path / "log.jsonl"))
  log.append("a\n")
  storage.AppendFile(str(tmp_path / "log.jsonl")).append("b\n")
  assert (tmp_path / "log.jsonl").read_text() == "a\nb\n"
  storage.rename(str(tmp_path / "d"), str(tmp_path / "e"))
  assert storage.listdir(str(tmp_path)) == ["e", "log.jsonl"]
  assert storage.free_bytes(str(tmp_path)) > 0
  assert storage.local_copy(str(tmp_path / "e")) == str(tmp_path / "e")


def test_remote_write_append_list_rename(gcs):
  base = f"{gcs.bucket}/storage-unit"
  storage.check_writable(base)
  storage.write_atomic(storage.join(base, "x.json"), '{"a": 1}')
  assert storage.read_text(storage.join(base, "x.json")) == '{"a": 1}'
  log = storage.AppendFile(storage.join(base, "m.jsonl"))
  log.append("1\n")
  log.append("2\n")
  storage.AppendFile(storage.join(base, "m.jsonl")).append("3\n")  # a resumed writer continues
  assert storage.read_text(storage.join(base, "m.jsonl")) == "1\n2\n3\n"
  storage.write_atomic(storage.join(base, "5", "meta", "metadata"), "m")
  storage.write_atomic(storage.join(base, "5", "params", "d", "0"), b"\x00\x01")
  storage.rename(storage.join(base, "5"), storage.join(base, "5.unreadable"))
  assert storage.listdir(base) == ["5.unreadable", "m.jsonl", "x.json"]
  assert storage.read_bytes(storage.join(base, "5.unreadable", "params", "d", "0")) == b"\x00\x01"
  assert storage.free_bytes(base) is None
  local = storage.local_copy(storage.join(base, "5.unreadable"))
  with open(os.path.join(local, "params", "d", "0"), "rb") as f:
    assert f.read() == b"\x00\x01"
  assert storage.isfile(storage.join(base, "x.json")) and storage.isdir(base)
  assert not storage.exists(storage.join(base, "missing"))


def test_missing_bucket_is_one_line_with_the_fix(gcs):
  with pytest.raises(storage.StorageError) as err:
    storage.check_writable("gs://no-such-bucket/run")
  message = str(err.value)
  assert "\n" not in message and "gs://no-such-bucket" in message
  assert "gcloud storage buckets create gs://no-such-bucket" in message


def test_listing_sees_changes_made_by_another_process(gcs):
  """gcsfs would cache listings for the process's life; other hosts change the bucket behind it."""
  import subprocess
  import sys
  base = f"{gcs.bucket}/listing"
  storage.write_atomic(f"{base}/1", "x")
  assert storage.listdir(base) == ["1"]
  subprocess.run([sys.executable, "-c", f"from simko_jax import storage; "
                  f"storage.write_atomic('{base}/2', 'y'); storage.as_path('{base}/1').unlink()"],
                 check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert storage.listdir(base) == ["2"] and not storage.exists(f"{base}/1")
