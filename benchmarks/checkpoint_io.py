"""Checkpoint save time and bytes per host for the 7B target configs.

  PYTHONPATH=. python benchmarks/checkpoint_io.py [--mb 256] [--repeats 2]

1. Write bandwidth of a synchronous Orbax save (`RunCheckpointer`, the trainer's own wrapper) of `--mb`
   MB of float32 arrays (random values: nothing compresses) to a local temporary directory and to a
   fake-gcs-server on 127.0.0.1 (tests/gcs_emulator.py). The emulator is NOT Google Cloud Storage: it
   measures our code path through tensorstore's HTTP client, not GCS throughput.
2. Bytes per host of each 7B target config: the dry run's per-device params + optimizer-state bytes
   (`simko_jax.train.dry_run.analyze(cfg, compile=False)`, one subprocess per config because the fake
   device count is fixed at JAX start-up) x devices per host (target.num_devices / num_processes).
3. A Markdown table: estimated save time per host at the measured local bandwidth and at planning
   figures for GCS per-host throughput (see GCS_MB_S).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("qwen25_math7b_h100x8", "qwen25_math7b_h100x16_slurm", "qwen25_math7b_tpu_v4_32",
           "qwen25_math7b_tpu_v5e_64", "qwen25_math7b_tpu_v5p_128")
# Planning figures for one host writing to a GCS bucket in its region (assumptions, not measurements).
GCS_MB_S = {"gcs_200MB/s": 200.0, "gcs_1GB/s": 1000.0}


def config_bytes(name: str) -> dict:
  """Runs in a fresh process: {"per_device", "devices_per_host", ...} of configs/<name>.py."""
  sys.path.insert(0, ROOT)
  import importlib
  cfg = importlib.import_module(f"configs.{name}").get_config()
  from simko_jax.train import dry_run
  n = cfg.target.num_devices
  dry_run.prepare_devices(n)
  rep = dry_run.analyze(cfg, compile=False)
  return {"config": name, "num_devices": n, "num_processes": cfg.target.num_processes,
          "devices_per_host": n // cfg.target.num_processes,
          "per_device_bytes": rep["params_bytes"] + rep["opt_bytes"]}


def save_bandwidth(directory: str, mb: int, repeats: int) -> float:
  """Best MB/s of `repeats` synchronous saves of `mb` MB to `directory` (a fresh step each time)."""
  import jax
  import numpy as np

  from simko_jax.train.checkpoint import RunCheckpointer
  rng = np.random.default_rng(0)
  n = mb * 2**20 // 4 // 8
  params = {f"w{i}": jax.numpy.asarray(rng.standard_normal(n, dtype=np.float32)) for i in range(8)}
  ckpt = RunCheckpointer(directory, keep=repeats + 1, every=1, async_save=False)
  best = 0.0
  for step in range(1, repeats + 1):
    start = time.perf_counter()
    ckpt.save(step, params, {}, jax.random.key(0), {}, {}, force=True)
    ckpt.wait()
    best = max(best, mb * 2**20 / 1e6 / (time.perf_counter() - start))
  ckpt.close()
  return best


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mb", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--sizes_for", default="", help=argparse.SUPPRESS)  # the subprocess mode
  args = parser.parse_args()
  if args.sizes_for:
    print(json.dumps(config_bytes(args.sizes_for)))
    return
  sizes = []
  for name in CONFIGS:
    out = subprocess.run([sys.executable, __file__, "--sizes_for", name], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    sizes.append(json.loads(out.strip().splitlines()[-1]))

  sys.path.insert(0, ROOT)
  from tests.gcs_emulator import GcsEmulator, use_in_this_process
  with tempfile.TemporaryDirectory() as tmp:
    local = save_bandwidth(os.path.join(tmp, "ckpt"), args.mb, args.repeats)
    emulator = GcsEmulator(os.path.join(tmp, "fake-gcs-server.log"))
    try:
      bucket = emulator.create_bucket("bench")
      use_in_this_process(emulator.env)
      emu = save_bandwidth(f"{bucket}/ckpt", args.mb, args.repeats)
    finally:
      emulator.stop()

  rates = {"local": local, **GCS_MB_S}
  print(f"Orbax save of {args.mb} MB (best of {args.repeats}): local dir {local:.0f} MB/s, "
        f"fake-gcs-server on 127.0.0.1 {emu:.0f} MB/s (an emulator, not GCS)\n")
  print("| target config | devices/host | bytes/host (params + Adam) | " +
        " | ".join(f"save @ {k} ({v:.0f} MB/s)" for k, v in rates.items()) + " |")
  print("|---|---|---|" + "---|" * len(rates))
  for s in sizes:
    per_host = s["per_device_bytes"] * s["devices_per_host"]
    cells = [f"{per_host / 1e6 / rate:.0f} s" for rate in rates.values()]
    print(f"| {s['config']} | {s['devices_per_host']} | {per_host / 1e9:.1f} GB | " +
          " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
