"""Group-normalised advantages against numpy."""

import numpy as np

from simko_jax.losses import broadcast_advantages, grpo_advantages, signed_advantages


def test_grpo_advantages_match_numpy():
  r = np.array([[1, 0, 0, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]], np.float32)
  a = np.asarray(grpo_advantages(r))
  expected = (r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(a, expected, rtol=1e-5)
  assert np.all(a[1] == 0)                              # all-equal group: no signal
  assert a[0, 0] > 0 > a[0, 1]


def test_without_std_and_single_sample_groups():
  r = np.array([[1.0, 0.0, 0.0]], np.float32)
  np.testing.assert_allclose(grpo_advantages(r, normalize_std=False), [[2 / 3, -1 / 3, -1 / 3]],
                             rtol=1e-6)
  assert np.all(np.asarray(grpo_advantages(np.ones((3, 1)))) == 0)


def test_signed_and_broadcast():
  np.testing.assert_array_equal(signed_advantages(np.array([[1.0, 0.0]])), [[1.0, -1.0]])
  out = broadcast_advantages(np.array([1.0, -2.0]), np.ones((2, 3)))
  np.testing.assert_array_equal(out, [[1, 1, 1], [-2, -2, -2]])
