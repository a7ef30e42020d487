"""Preemption faults on real tiny trainer runs: SIGKILL at every phase, SIGTERM, a corrupt latest step.

Each finished run must equal the uninterrupted reference run bit for bit (params, optimizer state,
PRNG, data-iterator state, and the prompts consumed at every step); see tests/faults/harness.py.
The 12-trial version of the SIGKILL tests is `python -m tests.faults.kill_trials` (docs/reliability.md).
"""

import json
import re
import shutil
import signal
import time

from tests.faults import harness


def test_sigkill_in_each_phase_resumes_from_last_complete_checkpoint(tmp_path, reference, cache_dir):
  """Three SIGKILLs: right after an async save started, after an optimizer update, while sampling."""
  report = harness.kill_trial(0, tmp_path / "run", reference, cache_dir=cache_dir,
                              plan=[("save", 2), ("update", 3), ("sample", 5)])
  assert [k["mode"] for k in report["kills"]] == ["save", "update", "sample"]
  assert report["launches"] == 4
  print(json.dumps(report))


def test_sigkill_at_a_seeded_random_moment(tmp_path, reference, cache_dir):
  """A SIGKILL after a seeded random delay: lands anywhere (imports, compilation, a step, a save)."""
  report = harness.kill_trial(6, tmp_path / "run", reference, cache_dir=cache_dir, max_kills=1,
                              modes=("time",), max_delay_s=8.0)
  assert [k["mode"] for k in report["kills"]] == ["time"], report
  print(json.dumps(report))


def test_sigterm_saves_within_bound_exits_zero_and_resumes_exactly(tmp_path, reference, cache_dir):
  out = tmp_path / "run"
  proc = harness.launch(out, cache_dir=cache_dir)
  assert harness.wait_for_step(out, proc, 1), harness.output(proc)[-3000:]
  sent = time.monotonic()
  proc.send_signal(signal.SIGTERM)
  proc.wait(timeout=120)
  elapsed = time.monotonic() - sent
  text = harness.output(proc)
  assert proc.returncode == 0, text[-3000:]
  stopped_at = int(re.search(r"SIGTERM: saving step (\d+)", text)[1])
  assert 1 <= stopped_at < harness.STEPS, "the run finished before SIGTERM could interrupt it"
  # Bound: the rest of one step (~0.5 s here) plus one synchronous wait for the save.
  assert elapsed < 30.0, elapsed
  print(f"SIGTERM -> exit 0 with step {stopped_at} saved in {elapsed:.2f} s")
  assert harness.complete_steps(out)[-1] == stopped_at and not harness.partial_saves(out)
  assert harness.checkpoint_state(out, stopped_at)["meta"]["step"] == stopped_at

  rc, text = harness.run(out, cache_dir=cache_dir)
  assert rc == 0, text[-3000:]
  assert harness.resumed_from(text) == stopped_at
  harness.assert_same_run(reference, out)


def test_corrupt_latest_checkpoint_falls_back_and_finishes_exactly(tmp_path, reference, cache_dir):
  """The finished reference run with its newest step truncated: resume from the previous step, redo
  the last step, write it again (the unreadable one is kept aside) and end identical."""
  out = tmp_path / "run"
  shutil.copytree(reference, out)
  last = harness.STEPS
  data_files = [p for p in (out / "checkpoints" / str(last) / "params").rglob("*")
                if p.is_file() and p.parent.name == "d"]
  assert data_files
  for path in data_files:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

  rc, text = harness.run(out, cache_dir=cache_dir)
  assert rc == 0, text[-3000:]
  assert harness.resumed_from(text) == last - 1
  assert (out / "checkpoints" / f"{last}.unreadable").is_dir()
  harness.assert_same_run(reference, out)
