"""launch/gpu_host.sh for real: a tiny trainer run (configs/tiny_random.py, CPU) started detached,
seen by `status` and `logs`, stopped by `stop` (SIGTERM: it saves and exits 0), and continued to the
end by `resume`, which must restart from the step `stop` saved."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 10


def host(env, *args):
  out = subprocess.run(["bash", str(ROOT / "launch" / "gpu_host.sh"), *args], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  return out.returncode, out.stdout + out.stderr


def wait_for(predicate, what, timeout=300.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return
    time.sleep(0.1)
  raise AssertionError(f"timed out waiting for {what}")


def test_start_status_logs_stop_resume_a_tiny_run(tmp_path):
  out_dir, run_dir = tmp_path / "out", tmp_path / "run"
  env = dict(os.environ, CONFIG="configs/tiny_random.py", OUT_DIR=str(out_dir), RUN_DIR=str(run_dir),
             PYTHON=sys.executable, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHONPATH=str(ROOT),
             STOP_TIMEOUT="300", HF_HUB_OFFLINE="1")  # tests never reach the Hub
  env.pop("SIMKO_FAULT_AT", None)
  rc, text = host(env, "start", f"--config.train.steps={STEPS}", "--config.checkpoint.every=1",
                  "--config.eval.enabled=False", "--config.algo.advantage=signed")
  assert rc == 0 and "started worker 0 (pid" in text, text
  pid = int((run_dir / "worker-0.pid").read_text())
  try:
    rc, text = host(env, "status")
    assert rc == 0 and f"worker 0: running (pid {pid})" in text, text

    metrics = out_dir / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 1, "step 1")
    rc, text = host(env, "status")
    assert re.search(rf"last step in {re.escape(str(metrics))}: \d+", text), text
    rc, text = host(env, "logs")
    assert rc == 0 and "start: env HF_HUB_OFFLINE=1" in text and "RL steps" in text, text

    rc, text = host(env, "stop")
    assert rc == 0 and "worker 0: exited with status 0" in text, text
    events = (out_dir / "events.log").read_text()
    stopped_at = int(re.search(r"SIGTERM: saving step (\d+)", events)[1])
    assert 1 <= stopped_at < STEPS, "the run ended before `stop` could interrupt it"
    steps = sorted(int(p.name) for p in (out_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == stopped_at
    rc, text = host(env, "status")
    assert "worker 0: exited with status 0" in text, text

    rc, text = host(env, "resume")
    assert rc == 0 and "started worker 0" in text, text
    pid = int((run_dir / "worker-0.pid").read_text())
    wait_for(lambda: (run_dir / "worker-0.exit").exists(), "the resumed run to finish")
    assert (run_dir / "worker-0.exit").read_text().strip() == "0"
    log = (run_dir / "worker-0.log").read_text()
    assert f"resumed from checkpoint step {stopped_at}" in log
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == list(
        range(1, STEPS + 1))
  finally:
    try:   # a failed test must not leave the trainer running
      os.kill(pid, 9)
    except OSError:
      pass
