"""Benchmark metrics from stored problem records: pass@k, maj@k, response length, truncation.

All numbers are means over problems (each problem weighs the same), computed from the records alone, so
a resumed run and an uninterrupted one with the same records give identical metrics.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from simko_jax.eval.store import ProblemRecord
from simko_jax.metrics.estimators import maj_at_k, pass_at_k


def summarize(records: Sequence[ProblemRecord], ks: Sequence[int], *, maj_method: str = "auto",
              seed: int = 0) -> dict:
  """Metrics dict for one benchmark.

  Keys: num_problems, num_samples (n; every record must have the same n), pass@k and maj@k as
  {str(k): float in [0, 1]} for k in `ks` (k <= n), mean_response_tokens (over all samples),
  truncated_frac (fraction of samples with finish_reason == length), mean_correct_frac (= pass@1).
  """
  if not records:
    raise ValueError("no records to summarise")
  ns = {r.n for r in records}
  if len(ns) != 1:
    raise ValueError(f"records have different sample counts {sorted(ns)}; evaluate with one num_samples")
  n = ns.pop()
  ks = [int(k) for k in ks if int(k) <= n]
  records = sorted(records, key=lambda r: r.index)
  c_P = np.asarray([sum(bool(x) for x in r.correct) for r in records], np.int64)
  n_P = np.full_like(c_P, n)
  pass_k = {str(k): float(np.mean(pass_at_k(n_P, c_P, k))) for k in ks}
  answers = [list(r.answers) for r in records]
  correct = [[bool(x) for x in r.correct] for r in records]
  maj_k = {str(k): float(np.mean(maj_at_k(answers, correct, k, method=maj_method, seed=seed)))
           for k in ks}
  tokens = np.asarray([t for r in records for t in r.num_tokens], np.float64)
  truncated = np.asarray([t for r in records for t in r.truncated], np.float64)
  return {
      "num_problems": len(records), "num_samples": n, "pass@k": pass_k, "maj@k": maj_k,
      "mean_response_tokens": float(tokens.mean()), "truncated_frac": float(truncated.mean()),
      "mean_correct_frac": float(c_P.sum() / (n * len(records))),
  }


def average_over(results: dict[str, dict], names: Sequence[str] | None = None) -> dict:
  """Unweighted mean over benchmarks (the paper's "avg" column) of pass@k / maj@k at the k values they
  all share, and of the length/truncation numbers. `names` restricts the benchmarks (missing ones are
  skipped); returns {} when none is present."""
  names = [b for b in (names or list(results)) if b in results]
  if not names:
    return {}
  shared = set.intersection(*(set(results[b]["pass@k"]) for b in names))
  ks = sorted(shared, key=int)
  out = {"benchmarks": list(names)}
  for key in ("pass@k", "maj@k"):
    out[key] = {k: float(np.mean([results[b][key][k] for b in names])) for k in ks}
  for key in ("mean_response_tokens", "truncated_frac"):
    out[key] = float(np.mean([results[b][key] for b in names]))
  return out
