"""Two trainer processes (2 hosts x 4 CPU devices) sharing one out_dir in a bucket (fake-gcs-server).

What a pod needs from gs://: both hosts write their shards of one checkpoint to the same bucket
directory (not each its own local disk), process 0 alone writes the logs, and a restart of both
resumes from the bucket.
"""

import json
import pytest

from simko_jax import storage
from tests.faults import harness
from tests.multiprocess import run_processes
from tests.train.test_multihost import _trainer_supports_multiprocess


@pytest.mark.slow
def test_two_process_trainer_on_a_bucket_runs_and_resumes(gcs, tmp_path):
  if not _trainer_supports_multiprocess():
    pytest.skip("the trainer lacks multi-process support")
  out_dir = f"{gcs.bucket}/multihost"

  def trainer(steps, tag):
    run_processes("simko_jax.main", [
        "--config", "configs/tiny_random.py", f"--config.train.steps={steps}",
        "--config.train.mesh_data=2", "--config.train.mesh_tensor=4", "--config.eval.enabled=False",
        "--config.algo.advantage=signed",  # no reward from a random model: make the updates move the params
        f"--config.out_dir={out_dir}"], tmp_path / tag)

  trainer(2, "a")
  steps = lambda: [json.loads(x)["step"] for x in storage.read_text(f"{out_dir}/metrics.jsonl").splitlines()]
  assert steps() == [1, 2]
  # two steps, and the run's tokenizer files (written once, by process 0, into the bucket too)
  assert sorted(n for n in storage.listdir(f"{out_dir}/checkpoints") if not n.startswith(".")) == [
      "1", "2", "tokenizer"]
  assert storage.exists(f"{out_dir}/checkpoints/2/commit_success.txt")
  trainer(3, "b")
  assert "resumed from checkpoint step 2" in (tmp_path / "b0.log").read_text()
  assert steps() == [1, 2, 3]
  harness.assert_params_moved(out_dir, 3)   # the resumed step's update reached the bucket's checkpoint
