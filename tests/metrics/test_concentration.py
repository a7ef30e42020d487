"""Lambda(n) and rank probabilities against a per-response Python loop."""

import numpy as np

from simko_jax.metrics.concentration import concentration_metrics


def test_matches_loop():
  rng = np.random.default_rng(0)
  topk = -np.sort(rng.random((3, 7, 5)) * 6, -1).astype(np.float32)
  logp = (-rng.random((3, 7)) * 6).astype(np.float32)
  mask = (rng.random((3, 7)) > 0.3).astype(np.float32)
  mask[1] = 0                                           # an empty response is ignored
  out = concentration_metrics(topk, logp, mask, num_lambda=3)
  rows = [i for i in range(3) if mask[i].sum()]
  for n in range(3):
    expected = np.mean([topk[i, mask[i] > 0, n].mean() for i in rows])
    np.testing.assert_allclose(out[f"lambda_{n + 1}"], expected, rtol=1e-5)
  np.testing.assert_allclose(out["lambda_sample"],
                             np.mean([logp[i, mask[i] > 0].mean() for i in rows]), rtol=1e-5)
  for n in range(5):
    np.testing.assert_allclose(out[f"rank{n + 1}_prob"], np.exp(topk[..., n])[mask > 0].mean(),
                               rtol=1e-5)
