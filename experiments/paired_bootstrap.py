"""Paired bootstrap over seeds and problems: the 95 % interval of a mean difference of pass@k.

`paired_bootstrap(d_SxP, num_resamples, seed)`: `d_SxP[s, p]` is the difference of two policies'
pass@k on problem p for seed s (the same seed index pairs the two methods: same warm start, same
prompt order, same evaluation draws). Each resample draws S seeds and P problems with replacement,
independently, and takes the mean of d over the drawn (seed, problem) cells; with multiplicity weights
w_S and w_P that mean is w_S^T d w_P / (S P), computed for all resamples at once. Returns the point
estimate (the mean of d), the percentile 2.5 / 97.5 interval, and the resampled means.
This treats both the seeds and the problems as samples from larger populations, so the interval covers
the seed-to-seed (training) noise and the problem-sampling noise.
"""

from __future__ import annotations

import numpy as np


def paired_bootstrap(d_SxP: np.ndarray, num_resamples: int = 2000, seed: int = 0) -> dict:
  d = np.asarray(d_SxP, np.float64)
  s, p = d.shape
  rng = np.random.default_rng(seed)
  w_BxS = rng.multinomial(s, np.full(s, 1.0 / s), size=num_resamples).astype(np.float64)
  w_BxP = rng.multinomial(p, np.full(p, 1.0 / p), size=num_resamples).astype(np.float64)
  means_B = np.einsum("bs,sp,bp->b", w_BxS, d, w_BxP) / (s * p)
  lo, hi = np.percentile(means_B, [2.5, 97.5])
  return {"mean": float(d.mean()), "lo": float(lo), "hi": float(hi), "half_width": float((hi - lo) / 2),
          "resamples": means_B}


def seeds_for_half_width(sd: float, half_width: float, z: float = 1.96) -> int:
  """Seeds n with a normal-approximation 95 % half-width z * sd / sqrt(n) below `half_width`."""
  return int(np.ceil((z * sd / half_width) ** 2))
