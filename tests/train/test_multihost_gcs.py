"""Two trainer processes (2 hosts x 4 CPU devices) sharing one out_dir in a bucket (fake-gcs-server).

What a pod needs from gs://: both hosts write their shards of one checkpoint to the same bucket
directory (not each its own local disk), process 0 alone writes the logs, and a restart of both
resumes from the bucket.
"""

import json
import os
import subprocess
import sys

import pytest

from simko_jax import storage
from tests.train.test_multihost import ROOT, _trainer_supports_multiprocess, free_port


@pytest.mark.slow
def test_two_process_trainer_on_a_bucket_runs_and_resumes(gcs, tmp_path):
  if not _trainer_supports_multiprocess():
    pytest.skip("the trainer lacks multi-process support")
  out_dir = f"{gcs.bucket}/multihost"

  def trainer(steps, tag):
    port, procs = free_port(), []
    for i in range(2):
      env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
                 JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo", SIMKO_COORDINATOR=f"127.0.0.1:{port}",
                 SIMKO_NUM_PROCESSES="2", SIMKO_PROCESS_ID=str(i), PYTHONPATH=ROOT)
      log = open(tmp_path / f"{tag}{i}.log", "w")
      procs.append(subprocess.Popen(
          [sys.executable, "-m", "simko_jax.main", "--config", "configs/tiny_random.py",
           f"--config.train.steps={steps}", "--config.train.mesh_data=2", "--config.train.mesh_tensor=4",
           "--config.eval.enabled=False", f"--config.out_dir={out_dir}"],
          env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
    try:
      for i, p in enumerate(procs):
        assert p.wait(timeout=300) == 0, (tmp_path / f"{tag}{i}.log").read_text()[-4000:]
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()

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
