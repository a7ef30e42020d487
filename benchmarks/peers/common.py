"""Shared by the peer benchmark scripts (run as subprocesses of `benchmarks/sampling.py`): the SmolLM2-135M
shape, random prompts and the timing/JSON protocol. Imports nothing but numpy so every venv can use it."""

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


def report(name: str, batch: int, new_tokens: int, first: float, warm: list[float], **extra) -> dict:
  """Print and return the result JSON line (tokens/s from the best warm run; median also given)."""
  best, median = min(warm), float(np.median(warm))
  row = dict(name=name, batch=batch, new_tokens=new_tokens, first_call_s=round(first, 3),
             warm_s=[round(w, 3) for w in warm], best_s=round(best, 3),
             tokens_per_s=round(batch * new_tokens / best, 2),
             tokens_per_s_median=round(batch * new_tokens / median, 2), **extra)
  print("RESULT " + json.dumps(row), flush=True)
  return row
