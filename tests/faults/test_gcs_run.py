"""Training runs whose out_dir is a bucket (fake-gcs-server on 127.0.0.1, the `gcs` fixture).

A run writing checkpoints, metrics and logs to `gs://` is SIGKILLed right after an async save started,
resumes from the bucket and ends bit-identical to the uninterrupted local reference run (harness's
`assert_same_run`); bad buckets are refused by the CLI with one line before anything is built.
"""

import http.server
import json
import threading

import pytest

from simko_jax import storage
from tests.faults import harness
from tests.gcs_emulator import client_env, free_port


@pytest.mark.slow
def test_sigkill_resume_from_bucket_equals_uninterrupted_run(gcs, tmp_path, reference, cache_dir):
  out = f"{gcs.bucket}/kill-run"
  report = harness.kill_trial(0, out, reference, cache_dir=cache_dir, plan=[("save", 2)],
                              log_dir=str(tmp_path))
  assert report["launches"] == 2 and report["kills"][0]["resumed_from"] is None
  assert report["kills"][0]["complete_after"] in ([1], [2])  # step 2's async save may have committed
  # Everything the run writes is in the bucket (and nothing under a local "gs:" directory).
  names = storage.listdir(out)
  for name in ("checkpoints", "metrics.jsonl", "events.log", "data_order.jsonl", "final_metrics.json",
               "tensorboard"):
    assert name in names, names
  steps = [json.loads(line)["step"] for line in storage.read_text(f"{out}/metrics.jsonl").splitlines()]
  assert sorted(set(steps)) == list(range(1, harness.STEPS + 1))
  assert "resumed from checkpoint step" in storage.read_text(f"{out}/events.log")
  assert json.loads(storage.read_text(f"{out}/final_metrics.json"))["step"] == harness.STEPS
  assert any(n.startswith("events.out.tfevents") for n in storage.listdir(f"{out}/tensorboard"))
  assert not (harness.ROOT / "gs:").exists()
  assert not harness.partial_saves(out)  # the redone step 2 replaced the uncommitted one


@pytest.mark.slow
def test_training_data_from_bucket(gcs, tmp_path, cache_dir):
  rows = [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(8)]
  data = f"{gcs.bucket}/data/cli-train.jsonl"
  storage.write_atomic(data, "".join(json.dumps(r) + "\n" for r in rows))
  rc, text = harness.run(tmp_path / "run", 2, cache_dir=cache_dir,
                         **{"data.task": "files", "data.train_files": data})
  assert rc == 0, text[-3000:]
  order = harness.data_order(tmp_path / "run")
  assert sorted(order) == [1, 2] and all(0 <= i < len(rows) for ids in order.values() for i in ids)
  harness.assert_params_moved(tmp_path / "run", 2)   # the bucket's problems really trained the model


def _one_error_line(rc: int, text: str) -> str:
  assert rc == 1 and "Traceback" not in text, text[-3000:]
  line = text.strip().splitlines()[-1]
  assert line.startswith("error: "), text[-3000:]
  return line


def test_cli_missing_bucket_is_refused_before_training(gcs, tmp_path):
  rc, text = harness.run("gs://no-such-bucket/run", 3, log_path=str(tmp_path / "log"))
  line = _one_error_line(rc, text)
  assert "gs://no-such-bucket" in line and "gcloud storage buckets create" in line
  assert "RL steps" not in text  # refused before the model was built or a step ran


class _Forbidden(http.server.BaseHTTPRequestHandler):
  """A GCS JSON API stand-in that refuses every request like a bucket without write permission."""

  def _deny(self):
    body = json.dumps({"error": {"code": 403, "message": "test-sa does not have storage.objects.create "
                                 "access to the Google Cloud Storage object."}}).encode()
    self.send_response(403)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  do_GET = do_POST = do_PUT = do_DELETE = _deny

  def log_message(self, *args):
    pass


def test_cli_unwritable_bucket_is_refused_before_training(tmp_path):
  server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Forbidden)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    rc, text = harness.run("gs://read-only/run", 3, log_path=str(tmp_path / "log"),
                           extra_env=client_env(url))
  finally:
    server.shutdown()
  line = _one_error_line(rc, text)
  assert "gs://read-only" in line and "storage.objects.create" in line and "credentials" in line


@pytest.mark.slow
def test_cli_unreachable_storage_is_refused_and_nothing_is_written(gcs, tmp_path):
  """The emulator's address with nothing listening (gcsfs retries ~30 s, then one line)."""
  out = f"{gcs.bucket}/unreachable-run"
  rc, text = harness.run(out, 3, log_path=str(tmp_path / "log"),
                         extra_env=client_env(f"http://127.0.0.1:{free_port()}"))
  line = _one_error_line(rc, text)
  assert "gs://simko-test" in line and "Cannot connect" in line
  assert not storage.exists(out)  # no checkpoint, half-written or otherwise
