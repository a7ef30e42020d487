"""Peak memory and time of loss + gradient at large vocabularies: naive K-copy vs top-K vs chunked.

Measured in one run, for SimKO and GRPO, on three implementations of the LM head + loss:
  (a) naive:    full [N, V] logits, log-softmax expanded K times ([N, K, V]) before gathering the
                candidates' log-probs, as the authors' released PyTorch code does;
  (b) top-K:    full [N, V] logits, candidates' log-probs as `top_k values - logsumexp` (ours, unfused);
  (c) chunked:  ours, fused LM head + statistics in token chunks under `jax.checkpoint`.

Peak memory is XLA's buffer assignment for the compiled loss+gradient (arguments + outputs + temporaries,
`compiled.memory_analysis()`), i.e. the device peak on an accelerator; it needs no execution, so the full
Qwen2.5-7B shapes are measured even on a small CPU. Both methods return their monitoring metrics
(entropy, Lambda(n), rank-1..5 probabilities) as the trainer does, so both compute entropy and top-5. Time is measured on warm runs (compile excluded)
at `--time_tokens` tokens, since a CPU cannot run 8192 x 3584 x 151936 matmuls in reasonable time.

  python benchmarks/loss_memory.py                      # full table (~3 min on 2 CPU cores)
  python benchmarks/loss_memory.py --time_tokens 0      # memory only (~1 min)
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from simko_jax.losses import fused_policy_loss, policy_loss, policy_loss_from_stats
from simko_jax.losses.token_stats import TokenStats

TOP_K = 3


def naive_stats(h, w, y):
  """The authors' memory pattern: log-softmax of K expanded copies of the logits, then gather."""
  logits = jnp.dot(h, w, preferred_element_type=jnp.float32)                      # [N, V]
  ids = jax.lax.stop_gradient(jax.lax.top_k(logits, 5)[1])                       # [N, 5]
  expanded = jnp.broadcast_to(logits[:, None, :], (logits.shape[0], TOP_K, logits.shape[1]))
  logp_k = jax.nn.log_softmax(expanded, axis=-1)                                 # [N, K, V]
  topk = jnp.take_along_axis(logp_k, ids[:, :TOP_K, None], axis=-1)[..., 0]
  logp_all = jax.nn.log_softmax(logits, axis=-1)
  rest = jnp.take_along_axis(logp_all, ids[:, TOP_K:], axis=-1)
  logp = jnp.take_along_axis(logp_all, y[:, None], axis=-1)[:, 0]
  p = jnp.exp(jax.lax.stop_gradient(logp_all))
  entropy = -jnp.sum(p * jax.lax.stop_gradient(logp_all), -1)
  return TokenStats(logp, entropy, jnp.concatenate([topk, rest], -1), y == ids[:, 0])


def make_loss(impl, method, chunk_size):
  def loss(h, w, y, old, adv, mask):
    kw = dict(old_logprobs=old[None], advantages=adv[None], mask=mask[None], method=method,
              top_k=TOP_K)
    if impl == "naive":
      stats = jax.tree.map(lambda x: x[None], naive_stats(h, w, y))
      return policy_loss_from_stats(stats, **kw)
    if impl == "topk":
      logits = jnp.dot(h, w, preferred_element_type=jnp.float32)
      return policy_loss(logits=logits[None], targets=y[None], **kw)
    return fused_policy_loss(hidden=h[None], unembedding=w, targets=y[None], chunk_size=chunk_size,
                             **kw)
  # Metrics are returned as the trainer does, so GRPO also computes entropy / top-5 for monitoring.
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


def inputs(tokens, hidden, vocab, dtype, abstract):
  shapes = dict(h=((tokens, hidden), dtype), w=((hidden, vocab), dtype), y=((tokens,), jnp.int32),
                old=((tokens,), jnp.float32), adv=((tokens,), jnp.float32),
                mask=((tokens,), jnp.float32))
  if abstract:
    return [jax.ShapeDtypeStruct(s, d) for s, d in shapes.values()]
  rng = np.random.default_rng(0)
  return [jnp.asarray(rng.normal(size=(tokens, hidden)) * 0.5, dtype),
          jnp.asarray(rng.normal(size=(hidden, vocab)) / np.sqrt(hidden), dtype),
          jnp.asarray(rng.integers(0, vocab, tokens), jnp.int32),
          jnp.full((tokens,), -12.0, jnp.float32),
          jnp.asarray(np.where(rng.random(tokens) > 0.5, 1.0, -1.0), jnp.float32),
          jnp.ones((tokens,), jnp.float32)]


def peak_bytes(fn, args):
  mem = fn.lower(*args).compile().memory_analysis()
  return (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
          - mem.alias_size_in_bytes)


def warm_time(fn, args, repeats):
  jax.block_until_ready(fn(*args))          # compile + first run
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tokens", type=int, default=8192)
  parser.add_argument("--hidden", type=int, default=3584)
  parser.add_argument("--vocabs", default="151936,49152")
  parser.add_argument("--chunk_size", type=int, default=1024)
  parser.add_argument("--dtype", default="bfloat16")
  parser.add_argument("--time_tokens", type=int, default=256, help="0 skips timing")
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  dtype = jnp.dtype(args.dtype)
  rows = []
  for vocab in [int(v) for v in args.vocabs.split(",")]:
    for impl in ("naive", "topk", "chunked"):
      for method in ("grpo", "simko"):
        fn = make_loss(impl, method, args.chunk_size)
        row = dict(vocab=vocab, impl=impl, method=method, tokens=args.tokens, hidden=args.hidden,
                   peak_gib=peak_bytes(fn, inputs(args.tokens, args.hidden, vocab, dtype, True))
                   / 2**30)
        if args.time_tokens:
          chunk = min(args.chunk_size, args.time_tokens // 2)
          fn_t = make_loss(impl, method, chunk)
          row["time_tokens"] = args.time_tokens
          row["time_s"] = warm_time(
              fn_t, inputs(args.time_tokens, args.hidden, vocab, dtype, False), args.repeats)
        rows.append(row)
        print(json.dumps(row), flush=True)

  print(f"\n| vocab | impl | method | peak GiB @ {args.tokens} tok | vs naive | time s @ "
        f"{args.time_tokens} tok | SimKO/GRPO time |")
  print("|---|---|---|---|---|---|---|")
  for row in rows:
    naive = next(r for r in rows if r["vocab"] == row["vocab"] and r["impl"] == "naive"
                 and r["method"] == row["method"])
    grpo = next(r for r in rows if r["vocab"] == row["vocab"] and r["impl"] == row["impl"]
                and r["method"] == "grpo")
    time_s = row.get("time_s", float("nan"))
    ratio = time_s / grpo.get("time_s", float("nan")) if args.time_tokens else float("nan")
    print(f"| {row['vocab']} | {row['impl']} | {row['method']} | {row['peak_gib']:.2f} | "
          f"{row['peak_gib'] / naive['peak_gib']:.1%} | {time_s:.3f} | {ratio:.3f} |")
  summary = {f"{r['vocab']}/{r['impl']}/{r['method']}": round(r["peak_gib"], 3) for r in rows}
  print(json.dumps({"benchmark": "loss_memory", "peak_gib": summary}))


if __name__ == "__main__":
  main()
