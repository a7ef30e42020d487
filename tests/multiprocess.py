"""Runs a `python -m simko_jax.<module>` command as N local JAX processes (one "host" each), the way a
pod or a SLURM job starts it: SIMKO_COORDINATOR on a free loopback port, SIMKO_NUM_PROCESSES and
SIMKO_PROCESS_ID per process, `devices` fake CPU devices each, gloo collectives across processes."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_processes(module: str, args: list[str], log_prefix, *, num: int = 2, devices: int = 4,
                  base_env: dict | None = None, env_for=None, timeout: float = 300) -> list[str]:
  """Starts `num` processes of `python -m module *args`, waits for all, asserts each exits 0 (showing
  its log's tail otherwise) and returns their logs. `log_prefix`: process i logs to "<prefix><i>.log".
  `base_env` (default os.environ) is every process's environment; `env_for(i)` adds per-process
  variables (e.g. a fault to inject into one process only)."""
  port, procs, logs = free_port(), [], []
  for i in range(num):
    env = dict(base_env if base_env is not None else os.environ,
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo", SIMKO_COORDINATOR=f"127.0.0.1:{port}",
               SIMKO_NUM_PROCESSES=str(num), SIMKO_PROCESS_ID=str(i), PYTHONPATH=str(ROOT),
               **(env_for(i) if env_for else {}))
    logs.append(pathlib.Path(f"{log_prefix}{i}.log"))
    with open(logs[-1], "w") as log:
      procs.append(subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=ROOT))
  try:
    for i, p in enumerate(procs):
      rc = p.wait(timeout=timeout)
      assert rc == 0, f"process {i} exited {rc}:\n{logs[i].read_text()[-4000:]}"
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return [log.read_text() for log in logs]
