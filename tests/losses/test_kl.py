"""KL estimators against their formulas, and the k3 estimator's unbiasedness by Monte Carlo."""

import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.losses import kl_penalty


def test_estimators_match_formulas():
  lp = np.array([-1.0, -2.0, -0.5], np.float32)
  ref = np.array([-1.5, -1.0, -0.5], np.float32)
  d = lp - ref
  np.testing.assert_allclose(kl_penalty(lp, ref, "k1"), d, rtol=1e-6)
  np.testing.assert_allclose(kl_penalty(lp, ref, "k2"), 0.5 * d * d, rtol=1e-6)
  np.testing.assert_allclose(kl_penalty(lp, ref, "k3"), np.exp(-d) + d - 1, rtol=1e-6)
  with pytest.raises(ValueError, match="k3"):
    kl_penalty(lp, ref, "k4")


def test_k3_is_unbiased_estimate_of_kl():
  rng = np.random.default_rng(0)
  p = np.array([0.6, 0.3, 0.1])
  q = np.array([0.3, 0.3, 0.4])
  samples = rng.choice(3, size=200_000, p=p)
  est = np.asarray(kl_penalty(jnp.log(p[samples]), jnp.log(q[samples]), "k3")).mean()
  np.testing.assert_allclose(est, (p * np.log(p / q)).sum(), atol=5e-3)
