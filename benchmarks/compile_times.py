"""Compile times of the sampler, train step and log-prob pass, and compilations across a real tiny run.

  python benchmarks/compile_times.py                       # SmolLM2-135M shape (default config), ~3 min
  python benchmarks/compile_times.py --shape mini --runs 2

Part 1, compile time at the default config's shapes (`config.default_config()`: SmolLM2-135M
architecture, random weights, float32; 4 prompts x 8 samples, prompts of `--prompt` (64) tokens,
128 new tokens; train step over the 32 responses in 4 micro-batches of 8, loss chunk 512; the log-prob
pass over one micro-batch of 8 rows), for SimKO and GRPO train steps. Each program is timed as trace +
lower (`jax.jit(...).lower(...)`, Python-side) and XLA compile (`.compile()`), the best of `--runs`
fresh builds (a new `Sampler` / new `jax.jit` each run, so nothing is cached in memory; JAX's persistent
compilation cache is not configured in this project, so nothing is cached on disk either).
Peer, in the same run (`--peers tunix`, SmolLM2 shape only): Tunix 0.1.7's sampler
(`benchmarks/peers/tunix_sampler.py`, 32 rows, same prompt/new lengths; it has no `lower`, so its compile
time is its first call minus its best warm call). Tunix's GRPO train-step compilation is part of
`benchmarks/rl_iteration.py`'s first-iteration overhead (it is jitted inside its trainer loop).

Part 2, compilations across `--iterations` (3) iterations of a real tiny run (`configs/tiny_random.py`
through `train.loop.run`, checkpoint after every step, eval off): per iteration and between iterations,
the sampler's `num_compilations`, the train step's and log-prob pass's `_cache_size()`, and every XLA
backend compile in the process (`jax.monitoring` '/jax/core/compile/backend_compile_duration' events,
count and seconds). `tests/train/test_no_recompile.py` asserts the same on 8 fake devices.
Prints tables and one `JSON {...}` line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "peers"))
sys.path.insert(0, HERE)
from shapes import SHAPES  # noqa: E402

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


def loadavg() -> list[str]:
  with open("/proc/loadavg") as f:
    return f.read().split()[:3]


def timed_compile(lower_fn) -> tuple[float, float]:
  """(trace + lower seconds, compile seconds) of `lower_fn() -> jax.stages.Lowered`."""
  t = time.perf_counter()
  lowered = lower_fn()
  t_lower = time.perf_counter() - t
  t = time.perf_counter()
  lowered.compile()
  return t_lower, time.perf_counter() - t


def part1(args) -> list[dict]:
  import jax
  from flax import nnx

  from rl_iteration import model_config
  from simko_jax.config import default_config
  from simko_jax.models import Transformer
  from simko_jax.parallel import make_mesh, model_shardings, opt_state_shardings
  from simko_jax.sampling import Sampler
  from simko_jax.train.step import Batch, LossHParams, jit_logprobs, jit_train_step, make_optimizer

  cfg = default_config()
  g, prompts, new = cfg.rollout.group_size, cfg.rollout.prompts_per_step, cfg.rollout.max_new_tokens
  micro, p = cfg.algo.micro_batch_size, args.prompt
  n, t = prompts * g, args.prompt + new
  mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
  rng = np.random.default_rng(0)
  rows = []
  with jax.set_mesh(mesh):
    model = Transformer(model_config(args.shape), rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    p_sh = model_shardings(model, mesh)
    params = jax.device_put(params, p_sh)
    tx, _ = make_optimizer(cfg.optim, 100)
    o_sh = opt_state_shardings(tx, params, p_sh, mesh)
    opt_state = jax.jit(tx.init, out_shardings=o_sh)(params)
    prompt_tokens = rng.integers(1, model.cfg.vocab_size, (prompts, p)).astype(np.int32)
    batch = Batch(tokens=rng.integers(1, model.cfg.vocab_size, (n // micro, micro, t)).astype(np.int32),
                  attention_mask=np.ones((n // micro, micro, t), np.int32),
                  positions=np.broadcast_to(np.arange(t, dtype=np.int32), (n // micro, micro, t)).copy(),
                  loss_mask=np.ones((n // micro, micro, new), np.float32),
                  old_logprobs=np.zeros((n // micro, micro, new), np.float32),
                  ref_logprobs=np.zeros((n // micro, micro, new), np.float32),
                  advantages=rng.standard_normal((n // micro, micro)).astype(np.float32))

    def sampler_lower():
      sampler = Sampler(graphdef, pad_id=0, stop_ids=(2,), prompt_bucket=cfg.data.prompt_bucket)
      return sampler.lower(params, prompt_tokens, np.ones_like(prompt_tokens), jax.random.key(0), n=g,
                           max_new_tokens=new, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                           top_k=cfg.rollout.top_k)

    programs = [("sampler", sampler_lower)]
    for method in ("simko", "grpo"):
      cfg.algo.method = method
      loss_cfg = LossHParams.from_config(cfg)
      programs.append((f"train step ({method})", lambda lc=loss_cfg: jit_train_step(
          graphdef, tx, lc, p_sh, o_sh, mesh).lower(params, opt_state, batch)))
    lp_args = (batch.tokens[0], batch.attention_mask[0], batch.positions[0])
    programs.append(("log-prob pass", lambda: jit_logprobs(graphdef, LossHParams.from_config(cfg), p_sh, mesh)
                     .lower(params, *lp_args, new)))
    for name, fn in programs:
      times = [timed_compile(fn) for _ in range(args.runs)]
      best = min(times, key=sum)
      row = dict(impl="ours", program=name, lower_s=round(best[0], 2), compile_s=round(best[1], 2),
                 total_s=round(sum(best), 2), all=[[round(a, 2), round(b, 2)] for a, b in times],
                 loadavg=loadavg())
      print("RESULT " + json.dumps(row), flush=True)
      rows.append(row)
  return rows


def part1_tunix(args) -> list[dict]:
  """Tunix's sampler compile time = its first call - its best warm call (it exposes no `lower`), from
  `benchmarks/peers/tunix_sampler.py` (SmolLM2-135M shape, 32 rows x 64 prompt tokens, 128 new)."""
  if not os.path.exists(args.tunix_python) or args.shape != "smollm2":
    print(f"Tunix sampler peer skipped (needs {args.tunix_python} and --shape smollm2)")
    return []
  cmd = [args.tunix_python, os.path.join(HERE, "peers", "tunix_sampler.py"), "--batch", "32", "--prompt",
         str(args.prompt), "--new", "128", "--runs", "2"]
  print("$ " + " ".join(cmd), flush=True)
  proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  rows = [json.loads(l[len("RESULT "):]) for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not rows:
    print(f"Tunix sampler peer failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return []
  r = rows[-1]
  row = dict(impl="tunix", program="sampler (first call - warm call)", lower_s=None,
             compile_s=round(r["first_call_s"] - r["best_s"], 2), total_s=round(r["first_call_s"] - r["best_s"], 2),
             all=[r["first_call_s"], r["warm_s"]], loadavg=loadavg())
  print("RESULT " + json.dumps(row), flush=True)
  return [row]


def part2(args) -> list[dict]:
  import jax

  from configs import tiny_random
  from simko_jax.train import loop

  durations: list[float] = []

  def listener(event, duration, **kw):
    if event == BACKEND_COMPILE:
      durations.append(duration)

  def counts(run):
    return dict(sampler=run.sampler.num_compilations, train_step=run.train_step._cache_size(),
                logprobs=run.logprob_fn._cache_size(), backend=len(durations),
                backend_s=sum(durations))

  rows, last = [], {}
  original = loop.iteration

  def counted(run, logger):
    before = counts(run)
    if last:
      rows.append(dict(phase=f"between {run.step} and {run.step + 1} (log, save)",
                       **{k: before[k] - last[k] for k in before}))
    t = time.perf_counter()
    metrics = original(run, logger)
    after = counts(run)
    rows.append(dict(phase=f"iteration {run.step + 1}", wall_s=round(time.perf_counter() - t, 2),
                     **{k: after[k] - before[k] for k in after}))
    last.clear()
    last.update(after)
    return metrics

  cfg = tiny_random.get_config()
  with tempfile.TemporaryDirectory() as out_dir:
    cfg.out_dir = out_dir
    cfg.train.steps = args.iterations
    cfg.eval.enabled = False
    cfg.checkpoint.every = 1
    cfg.checkpoint.async_save = False
    loop.iteration = counted
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
      loop.run(cfg)
    finally:
      loop.iteration = original
      jax.monitoring.unregister_event_duration_listener(listener)
  for r in rows:
    r["backend_s"] = round(r["backend_s"], 2)
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--shape", default="smollm2", choices=sorted(SHAPES))
  ap.add_argument("--prompt", type=int, default=64)
  ap.add_argument("--runs", type=int, default=2, help="fresh builds per program; the best is reported")
  ap.add_argument("--iterations", type=int, default=3)
  ap.add_argument("--peers", default="tunix", help="'tunix' or 'none'")
  ap.add_argument("--tunix_python", default="/tmp/venv-peers/bin/python")
  args = ap.parse_args()
  load_start = loadavg()
  print(f"load average {' '.join(load_start)}", flush=True)
  compiles = part1(args)
  if args.peers == "tunix":
    compiles += part1_tunix(args)
  run_rows = part2(args)
  load_end = loadavg()

  print(f"\ncompile times, shape {args.shape} (best of {args.runs}):")
  print(f"{'impl':<7}{'program':<40}{'trace+lower s':>14}{'compile s':>11}{'total s':>9}")
  for r in compiles:
    lower = "-" if r["lower_s"] is None else f"{r['lower_s']:.2f}"
    print(f"{r['impl']:<7}{r['program']:<40}{lower:>14}{r['compile_s']:>11.2f}{r['total_s']:>9.2f}")
  print(f"\ncompilations in a {args.iterations}-iteration tiny run (configs/tiny_random.py):")
  print(f"{'phase':<32}{'sampler':>8}{'train step':>11}{'logprobs':>9}{'XLA compiles':>13}{'compile s':>10}")
  for r in run_rows:
    print(f"{r['phase']:<32}{r['sampler']:>8}{r['train_step']:>11}{r['logprobs']:>9}{r['backend']:>13}"
          f"{r['backend_s']:>10.2f}")
  print(f"load average: start {' '.join(load_start)}, end {' '.join(load_end)}")
  print("JSON " + json.dumps(dict(shape=args.shape, prompt=args.prompt, compile_times=compiles,
                                  tiny_run=run_rows, loadavg_start=load_start, loadavg_end=load_end)))


if __name__ == "__main__":
  main()
