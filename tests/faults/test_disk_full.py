"""Full disk and unwritable output in real runs: detected at start-up or at save with one clear message;
the previous checkpoint stays intact and the run resumes from it exactly."""

import re

from tests.faults import harness


def test_disk_full_during_async_save_stops_cleanly_and_resume_is_exact(tmp_path, reference, cache_dir):
  out = tmp_path / "run"
  rc, text = harness.run(out, module="tests.faults.enospc_main", cache_dir=cache_dir,
                         extra_env={"SIMKO_ENOSPC_STEP": "3"})
  assert rc == 1, text[-3000:]
  errors = [line for line in text.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and re.match(
      r"error: saving step 3 to '.*checkpoints' failed while writing in the background: \[Errno 28\] "
      r"No space left on device: .* Earlier checkpoints are untouched \(latest complete step: 2\)\.$",
      errors[0]), errors
  assert harness.complete_steps(out) == [1, 2]
  assert harness.checkpoint_state(out, 2)["meta"]["step"] == 2  # intact and readable

  rc, text = harness.run(out, cache_dir=cache_dir)  # space freed: resume
  assert rc == 0, text[-3000:]
  assert harness.resumed_from(text) == 2
  harness.assert_same_run(reference, out)


def test_unusable_output_directory_is_refused_at_start_up(tmp_path, cache_dir):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  rc, text = harness.run(blocker / "run", cache_dir=cache_dir, log_path=tmp_path / "run.log")
  assert rc == 1 and "Traceback" not in text, text[-3000:]
  assert text.strip().splitlines()[-1] == (
      f"error: config.out_dir = '{blocker}/run' cannot be created: [Errno 20] Not a directory: "
      f"'{blocker}/run'; choose a writable directory")
