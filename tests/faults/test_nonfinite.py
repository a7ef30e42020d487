"""Non-finite loss/gradients in a real tiny run: updates skipped (params and optimizer untouched), each
event logged with the step and the batch's example ids, and a clean abort after N in a row."""

import json

import numpy as np

from tests.faults import harness


def _same(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_nan_steps_are_skipped_logged_and_abort_after_the_limit(tmp_path, cache_dir):
  out = tmp_path / "run"
  # Steps 2, 4 and 5 get NaN advantages (every update of the step is non-finite); the limit is 2 in
  # a row, so step 2 is skipped and training goes on, and 4 + 5 abort the run.
  rc, text = harness.run(out, 5, fault="nan:2,nan:4,nan:5", cache_dir=cache_dir,
                         **{"train.max_nonfinite_in_a_row": 2, "checkpoint.keep": 10})
  assert rc == 1, text[-3000:]
  assert "Traceback" not in text
  last_line = text.strip().splitlines()[-1]
  assert last_line.startswith("error: 2 consecutive steps (up to step 5) had non-finite losses or "
                              "gradients (limit config.train.max_nonfinite_in_a_row = 2)"), last_line
  assert harness.complete_steps(out) == [1, 2, 3, 4]  # the aborting step is not saved

  states = {s: harness.checkpoint_state(out, s) for s in (1, 2, 3, 4)}
  for skipped, before in ((2, 1), (4, 3)):
    assert _same(states[skipped]["params"], states[before]["params"])
    assert _same(states[skipped]["train"], states[before]["train"])  # Adam moments and count too
    assert states[skipped]["data"] != states[before]["data"]  # the batch was consumed, not replayed
  assert not _same(states[3]["params"], states[2]["params"])  # a finite step does update

  metrics = {m["step"]: m for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
  assert [s for s in sorted(metrics) if metrics[s]["updates_skipped"]] == [2, 4, 5]
  events = (out / "events.log").read_text()
  order = harness.data_order(out)
  for step in (2, 4, 5):
    assert f"step {step}: 2 of 2 update(s) skipped (non-finite loss or gradient; parameters " \
           f"untouched); prompt example ids {order[step]}" in events
  assert "step 3:" not in events
