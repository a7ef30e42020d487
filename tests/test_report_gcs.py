"""`python -m simko_jax.report` with eval runs and the output in a bucket (fake-gcs-server)."""

import io
import json

import pytest
from PIL import Image

from simko_jax import report, storage
from tests.test_report import _fake_results


def test_report_reads_and_writes_the_bucket(gcs, capsys):
  base = f"{gcs.bucket}/report"
  for name, scale in (("grpo", 1.0), ("simko", 1.2)):
    storage.write_atomic(f"{base}/{name}/results.json", json.dumps(_fake_results(scale)))
  storage.write_atomic(f"{base}/simko-train/metrics.jsonl",
                       "".join(json.dumps({"step": s, "lambda_1": -0.1 * s}) + "\n" for s in range(1, 4)))
  written = report.main(["--runs", f"grpo={base}/grpo,simko={base}/simko", "--out", f"{base}/out",
                         "--train_metrics", f"simko={base}/simko-train"])
  assert storage.listdir(f"{base}/out") == ["lambda_steps.png", "pass_at_k.png", "report.md"]
  with Image.open(io.BytesIO(storage.read_bytes(written["pass_at_k"]))) as im:
    assert im.format == "PNG"
  text = storage.read_text(f"{base}/out/report.md")
  assert "| grpo" in text and "![pass_at_k](pass_at_k.png)" in text and text in capsys.readouterr().out


def test_report_missing_run_in_bucket_is_one_line(gcs):
  with pytest.raises(SystemExit) as exit_info:
    report.main(["--runs", f"a={gcs.bucket}/report/none", "--out", f"{gcs.bucket}/report/out2"])
  message = str(exit_info.value.code)
  assert message.startswith("error: ") and "\n" not in message and "results.json not found" in message
