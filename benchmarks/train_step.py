"""Train-step time, peak memory and MFU vs model size: our jitted step vs a PyTorch step (CPU).

  python benchmarks/train_step.py                                  # micro, mini, smollm2-12, smollm2
  python benchmarks/train_step.py --shapes micro,mini --peer none  # ours only, two sizes
  python benchmarks/train_step.py --shapes smollm2 --peer none --dtype bfloat16   # bf16 compute

Model sizes: `benchmarks/peers/shapes.py` (SmolLM2-style Llama decoders with its 49,152 vocabulary,
15.7M to 134.5M params, random weights). Step (both): `--seqs` sequences of `--prompt` + `--response`
random ids in `--micro` gradient-accumulation micro-batches, loss on the response tokens, global-norm
clipping 1.0, AdamW, float32 params; float32 compute (`--dtype bfloat16`: bf16 compute over the float32
master params, ours only: the torch peer is float32).

  ours    `train.step.jit_train_step` via `benchmarks/accelerator.py`'s `bench_train` (on-policy SimKO,
          fused chunked LM head, chunk 4096; GRPO too with `--methods simko,grpo`): compile time =
          `lower().compile()`; step time = median of `--repeats` warm steps after one untimed step;
          peak memory = XLA's compiled memory plan (arguments + outputs + temporaries - aliased: params,
          AdamW state, gradient accumulator, activations).
  peer    `benchmarks/peers/torch_train_step.py` (transformers LlamaForCausalLM, eager, sdpa, token-mean
          CE on the response, AdamW), a subprocess of this venv run after ours for each size; memory =
          its peak RSS minus the RSS after importing torch (CPU torch keeps no allocator statistics).
  MFU     `metrics.flops.train_step_flops(cfg, seqs, prompt, response)` / step time / the matmul
          FLOP/s measured in this run (`sampling.matmul_flops`: [3072]^2 jnp.dot in --dtype, float32
          accumulation, best of 5, at the start and at the end of the run; the higher is used); the
          same FLOP count is used for the peer (model FLOPs, not what each implementation executes).
Prints a table and one `JSON {...}` line, with the load average at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "peers"))
sys.path.insert(0, HERE)
from shapes import SHAPES  # noqa: E402


def loadavg() -> list[str]:
  with open("/proc/loadavg") as f:
    return f.read().split()[:3]


def bench_peer(shape: str, args) -> dict | None:
  cmd = [sys.executable, os.path.join(HERE, "peers", "torch_train_step.py"), "--shape", shape, "--seqs",
         str(args.seqs), "--prompt", str(args.prompt), "--response", str(args.response), "--micro",
         str(args.micro), "--repeats", str(args.repeats)]
  print("$ " + " ".join(cmd), flush=True)
  proc = subprocess.run(cmd, capture_output=True, text=True)
  rows = [json.loads(l[len("RESULT "):]) for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not rows:
    print(f"torch peer failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return None
  return rows[-1]


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--shapes", default="micro,mini,smollm2-12,smollm2")
  ap.add_argument("--methods", default="simko", help="comma list of simko,grpo (ours)")
  ap.add_argument("--seqs", type=int, default=8)
  ap.add_argument("--prompt", type=int, default=64)
  ap.add_argument("--response", type=int, default=128)
  ap.add_argument("--micro", type=int, default=1)
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--peer", default="torch", help="'torch' or 'none'")
  ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                  help="compute dtype of ours (params stay float32)")
  args = ap.parse_args()

  from accelerator import bench_train
  from rl_iteration import model_config
  from sampling import matmul_flops
  from simko_jax.metrics import flops as F

  if args.dtype != "float32" and args.peer != "none":
    ap.error("--dtype bfloat16 measures ours only: add --peer none")
  import jax.numpy as jnp
  dtype = jnp.dtype(args.dtype)
  load_start = loadavg()
  peak = matmul_flops(dtype=dtype)
  print(f"{args.dtype} matmul {peak / 1e9:.1f} GFLOP/s; load average {' '.join(load_start)}", flush=True)
  rows = []
  for shape in args.shapes.split(","):
    cfg = model_config(shape).replace(dtype=dtype)
    pc = F.param_counts(cfg)
    flops = F.train_step_flops(cfg, args.seqs, args.prompt, args.response)
    tokens = args.seqs * (args.prompt + args.response)
    for method in args.methods.split(","):
      r = bench_train(cfg, args.seqs, args.prompt, args.response, args.micro, args.repeats, method)
      row = dict(shape=shape, params=pc.total, impl=f"ours-{method}", compile_s=r["compile_s"],
                 step_s=r["step_s"], step_s_all=r["step_s_all"], memory_gib=r["xla_memory_plan_gib"],
                 memory_kind="XLA plan", tokens_per_s=round(tokens / r["step_s"], 1),
                 mfu=round(F.utilisation(flops, r["step_s"], peak), 4), step_flops=flops,
                 loadavg=loadavg())
      print("RESULT " + json.dumps(row), flush=True)
      rows.append(row)
    if args.peer == "torch":
      p = bench_peer(shape, args)
      if p:
        row = dict(shape=shape, params=pc.total, impl="torch", compile_s=None, first_step_s=p["first_step_s"],
                   step_s=p["step_s"], step_s_all=p["step_s_all"], memory_gib=p["peak_step_gib"],
                   memory_kind="peak RSS - base", tokens_per_s=round(tokens / p["step_s"], 1),
                   mfu=round(F.utilisation(flops, p["step_s"], peak), 4), step_flops=flops,
                   torch=p["torch"], loadavg=loadavg())
        print("RESULT " + json.dumps(row), flush=True)
        rows.append(row)
  # Matmul rate again at the end; MFU uses the higher (less loaded) of the two measurements.
  peak_end = matmul_flops(dtype=dtype)
  if peak_end > peak:
    for r in rows:
      r["mfu"] = round(F.utilisation(r["step_flops"], r["step_s"], peak_end), 4)
  peak_start, peak = peak, max(peak, peak_end)
  load_end = loadavg()

  print(f"\n{'shape':<12}{'params':>8}{'impl':>13}{'compile s':>10}{'step s':>9}{'tok/s':>8}{'MFU':>7}"
        f"{'memory GiB':>11}  kind")
  for r in rows:
    comp = "-" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
    print(f"{r['shape']:<12}{r['params'] / 1e6:>7.1f}M{r['impl']:>13}{comp:>10}{r['step_s']:>9.2f}"
          f"{r['tokens_per_s']:>8.0f}{100 * r['mfu']:>6.1f}%{r['memory_gib']:>11.2f}  {r['memory_kind']}")
  ratios = {}
  for shape in args.shapes.split(","):
    by = {r["impl"]: r for r in rows if r["shape"] == shape}
    if "torch" in by and "ours-simko" in by:
      ratios[f"{shape} torch/ours-simko step time"] = round(by["torch"]["step_s"] / by["ours-simko"]["step_s"], 2)
    if "ours-grpo" in by and "ours-simko" in by:
      ratios[f"{shape} simko/grpo"] = round(by["ours-simko"]["step_s"] / by["ours-grpo"]["step_s"], 3)
  for k, v in ratios.items():
    print(f"{k}: {v}")
  print(f"load average: start {' '.join(load_start)}, end {' '.join(load_end)}; {args.dtype} matmul GFLOP/s: "
        f"start {peak_start / 1e9:.1f}, end {peak_end / 1e9:.1f}")
  print("JSON " + json.dumps(dict(workload=dict(seqs=args.seqs, prompt=args.prompt, response=args.response,
                                                micro=args.micro, repeats=args.repeats, dtype=args.dtype),
                                  matmul_gflops=round(peak / 1e9, 1),
                                  matmul_gflops_start_end=[round(peak_start / 1e9, 1), round(peak_end / 1e9, 1)],
                                  loadavg_start=load_start,
                                  loadavg_end=load_end, results=rows, ratios=ratios)))


if __name__ == "__main__":
  main()
