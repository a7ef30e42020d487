"""Cost per step of the agreed SIGTERM stop (`simko_jax.train.preemption.StopRequest.agreed`).

Two local processes (CPU devices, gloo collectives, `jax.distributed` over 127.0.0.1) call `agreed()`
`--calls` times after a warm-up, the way the trainer calls it once per step; each reports the median
and 90th percentile of one call. The single-process cost (a flag read, no collective) is measured in
the parent for comparison. Prints a table and one JSON line.

  python benchmarks/preemption_agreement.py [--calls 200] [--devices_per_process 4]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_calls(stop, calls: int) -> np.ndarray:
  """Seconds per `stop.agreed()` call, `calls` of them after 10 warm-up calls (compilation)."""
  for _ in range(10):
    stop.agreed()
  times = np.empty(calls)
  for i in range(calls):
    start = time.perf_counter()
    stop.agreed()
    times[i] = time.perf_counter() - start
  return times


def worker(calls: int, out_path: str) -> None:
  sys.path.insert(0, ROOT)
  from simko_jax.train import distributed, preemption
  distributed.use_gloo_on_cpu()
  assert distributed.maybe_initialize()
  import jax
  stop = preemption.StopRequest()
  times = time_calls(stop, calls)
  assert not stop.agreed()
  with open(out_path, "w") as f:
    json.dump({"process": jax.process_index(), "median_us": float(np.median(times) * 1e6),
               "p90_us": float(np.percentile(times, 90) * 1e6)}, f)
  jax.distributed.shutdown()


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def two_processes(calls: int, devices: int, tmp: str) -> list[dict]:
  port, procs, outs = free_port(), [], []
  for i in range(2):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu", SIMKO_COORDINATOR=f"127.0.0.1:{port}", SIMKO_NUM_PROCESSES="2",
               SIMKO_PROCESS_ID=str(i), PYTHONPATH=ROOT)
    outs.append(os.path.join(tmp, f"agreement{i}.json"))
    procs.append(subprocess.Popen([sys.executable, __file__, "--worker", outs[-1],
                                   "--calls", str(calls)], env=env))
  for p in procs:
    if p.wait(timeout=600):
      raise SystemExit(f"a worker failed (exit {p.returncode})")
  results = []
  for path in outs:
    with open(path) as f:
      results.append(json.load(f))
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--calls", type=int, default=200)
  parser.add_argument("--devices_per_process", type=int, default=4)
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(args.calls, args.worker)
    return
  import tempfile

  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, ROOT)
  from simko_jax.train import preemption
  single = time_calls(preemption.StopRequest(), args.calls)
  with tempfile.TemporaryDirectory() as tmp:
    multi = two_processes(args.calls, args.devices_per_process, tmp)
  print(f"| processes | devices / process | median us / call | p90 us / call |\n|---|---|---|---|\n"
        f"| 1 | 1 | {np.median(single) * 1e6:.2f} | {np.percentile(single, 90) * 1e6:.2f} |")
  for r in multi:
    print(f"| 2 (process {r['process']}) | {args.devices_per_process} | {r['median_us']:.0f} | "
          f"{r['p90_us']:.0f} |")
  print(json.dumps({"single_median_us": float(np.median(single) * 1e6), "two_process": multi,
                    "calls": args.calls}))


if __name__ == "__main__":
  main()
