"""Shared by the peer benchmark scripts (run as subprocesses of `benchmarks/sampling.py`): the SmolLM2-135M
shape, random prompts, the response lengths of a workload and the timing/JSON protocol. Imports nothing but
numpy so every venv can use it."""

from __future__ import annotations

import json
import time

import numpy as np

# SmolLM2-135M (LlamaForCausalLM): 30 layers, d=576, 9 heads / 3 KV heads of 64, MLP 1536, vocab 49152, tied.
SMOLLM2 = dict(vocab_size=49152, hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64,
               intermediate_size=1536, rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


def random_prompts(batch: int, prompt_len: int, vocab: int, seed: int = 0) -> np.ndarray:
  """[batch, prompt_len] int32 ids in [1, vocab) (0 is the pad id; no padding: all prompts are full)."""
  return np.random.default_rng(seed).integers(1, vocab, (batch, prompt_len)).astype(np.int32)


# Long tail: with mean cap / 4, ~3 % of the draws reach the cap; p10 / p50 / p90 ~ cap / 23, cap / 6, cap / 1.7.
LOGNORMAL_SIGMA = 1.0


def response_lengths(kind: str, requests: int, cap: int, seed: int = 0) -> np.ndarray:
  """[requests] int32 response lengths in [1, cap] (every engine stops response r after lengths[r] tokens).

  fixed:     every response is `cap` tokens (the default workload).
  lognormal: round(exp(N(mu, LOGNORMAL_SIGMA^2))) clipped to [1, cap], mu = log(cap / 4) - sigma^2 / 2 so the
             unclipped mean is cap / 4; numpy default_rng(seed): every engine and run gets the same lengths.
  """
  if kind == "fixed":
    return np.full((requests,), cap, np.int32)
  if kind != "lognormal":
    raise ValueError(f"unknown lengths {kind!r}: use fixed or lognormal")
  sigma = LOGNORMAL_SIGMA
  draws = np.random.default_rng(seed).lognormal(np.log(cap / 4) - sigma ** 2 / 2, sigma, requests)
  return np.clip(np.round(draws), 1, cap).astype(np.int32)


def add_workload_args(ap) -> None:
  """The workload flags every sampling engine takes (`workload(args)` resolves the defaults)."""
  ap.add_argument("--batch", type=int, default=32, help="rows decoded together (static batch size)")
  ap.add_argument("--prompt", type=int, default=64)
  ap.add_argument("--new", type=int, default=None, help="response cap; default 128 (fixed), 512 (lognormal)")
  ap.add_argument("--lengths", choices=("fixed", "lognormal"), default="fixed",
                  help="response lengths (see common.response_lengths); fixed = every response --new tokens")
  ap.add_argument("--requests", type=int, default=None,
                  help="responses per run, served in batches of --batch; default --batch (fixed), "
                       "4 x --batch (lognormal)")
  ap.add_argument("--runs", type=int, default=3)
  ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")


def workload(args) -> np.ndarray:
  """Fill in the defaults of `add_workload_args`' flags; returns the [requests] response lengths."""
  fixed = args.lengths == "fixed"
  args.new = args.new or (128 if fixed else 512)
  args.requests = args.requests or (args.batch if fixed else 4 * args.batch)
  return response_lengths(args.lengths, args.requests, args.new)


def chunks(requests: int, batch: int):
  """Row slices of the consecutive static batches of `batch` rows that serve `requests` responses."""
  if requests % batch:
    raise SystemExit(f"--requests {requests} must be a multiple of --batch {batch} (one shape per batch)")
  return [slice(i, i + batch) for i in range(0, requests, batch)]


def time_runs(fn, runs: int, warmup=None) -> tuple[float, list[float]]:
  """(first-call seconds, warm-run seconds list): fn() must block until its result is ready. The first
  call is `warmup()` when given (e.g. a short generation: nothing to compile, no need for a full run)."""
  t = time.perf_counter()
  (warmup or fn)()
  first = time.perf_counter() - t
  warm = []
  for _ in range(runs):
    t = time.perf_counter()
    fn()
    warm.append(time.perf_counter() - t)
  return first, warm


def report(name: str, lengths: np.ndarray, first: float, warm: list[float], **extra) -> dict:
  """Print and return the result JSON line: tokens/s = sum(lengths) (the tokens of the finished responses
  of one run) / the best warm run's wall time; the median is also given."""
  best, median = min(warm), float(np.median(warm))
  tokens = int(np.sum(lengths))
  row = dict(name=name, useful_tokens=tokens, first_call_s=round(first, 3),
             warm_s=[round(w, 3) for w in warm], best_s=round(best, 3),
             tokens_per_s=round(tokens / best, 2), tokens_per_s_median=round(tokens / median, 2), **extra)
  print("RESULT " + json.dumps(row), flush=True)
  return row
