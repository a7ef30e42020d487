"""The agreed SIGTERM stop (simko_jax/train/preemption.py): unit checks, and real two-process runs of
configs/tiny_random.py (2 processes x 4 CPU devices, gloo) where only process 1 receives SIGTERM.

Process 1 signals itself through the loop's test-only hook (`SIMKO_FAULT_AT=sigterm:<step>`, a real
SIGTERM through the real handler, at a deterministic point); process 0 never sees a signal. Both must
exit 0 after the same step, leave exactly that step as the newest complete checkpoint, and the resumed
run must equal an uninterrupted two-process run bit for bit (tests/faults/harness.py's comparison).
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from simko_jax.train import preemption
from tests.faults import harness
from tests.multiprocess import run_processes

STEPS = 3


def test_senders_lists_the_processes_whose_flag_is_set():
  assert preemption.senders([0, 0, 0, 0]) == []
  assert preemption.senders(np.asarray([[0], [1], [0], [1]], np.int32)) == [1, 3]
  assert preemption.senders([1]) == [0]


def test_single_process_agreement_is_the_local_flag_and_sigterm_sets_it():
  previous = signal.getsignal(signal.SIGTERM)
  with preemption.on_sigterm() as stop:
    assert not stop.agreed() and stop.senders == []
    os.kill(os.getpid(), signal.SIGTERM)   # handled: the test process survives
    assert stop.local and stop.agreed() and stop.senders == [0]
  assert signal.getsignal(signal.SIGTERM) is previous


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("jax_cache_2proc")


def two_process_run(out_dir, steps, tag, *, cache_dir, fault_on_1=None, timeout=300):
  """Both processes of one run (`fault_on_1` injected into process 1 only); returns their logs.
  Asserts both exit 0."""
  return run_processes(
      "simko_jax.main", ["--config", "configs/tiny_random.py",
                         *harness.args(out_dir, steps, **{"train.mesh_data": 2, "train.mesh_tensor": 4})],
      f"{out_dir}.{tag}", base_env=harness.env(cache_dir, None), timeout=timeout,
      env_for=lambda i: {"SIMKO_FAULT_AT": fault_on_1} if i == 1 and fault_on_1 else {})


def test_sigterm_on_one_process_stops_both_at_the_same_step_and_resumes_exactly(tmp_path, cache_dir):
  """Launch a: SIGTERM on process 1 while the run is built -> the start state (step 0) is saved.
  Launch b: resumes from 0, SIGTERM on process 1 in step 2 -> both stop after step 2. Launch c: runs
  to the end. The result equals the uninterrupted two-process reference bit for bit."""
  reference = tmp_path / "reference"
  two_process_run(reference, STEPS, "ref", cache_dir=cache_dir)

  out = tmp_path / "run"
  log0, log1 = two_process_run(out, STEPS, "a", cache_dir=cache_dir, fault_on_1="sigterm:0")
  assert "SIGTERM: saving step 0 before exiting (signal seen by process(es) [1] of 2" in log0
  assert "process 1: SIGTERM: saving step 0" in log1
  assert harness.complete_steps(out) == [0] and not (out / "metrics.jsonl").exists()

  log0, log1 = two_process_run(out, STEPS, "b", cache_dir=cache_dir, fault_on_1="sigterm:2")
  assert "SIGTERM: saving step 2 before exiting (signal seen by process(es) [1] of 2" in log0
  assert "process 1: SIGTERM: saving step 2 before exiting" in log1
  assert harness.complete_steps(out) == [0, 1, 2] and not harness.partial_saves(out)
  assert [json.loads(line)["step"] for line in
          (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
  assert harness.checkpoint_state(out, 2)["meta"]["step"] == 2

  log0, _ = two_process_run(out, STEPS, "c", cache_dir=cache_dir)
  assert harness.resumed_from(log0) == 2
  harness.assert_same_run(reference, out, STEPS)
