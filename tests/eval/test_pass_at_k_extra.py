"""What tests/metrics/test_estimators.py does not cover and the harness relies on: mixed n per problem in
one vectorised call (brute force), no floating-point warnings on the full n=1024 grid, monotonicity,
and very large n."""

import itertools
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from simko_jax.metrics.estimators import pass_at_k


def test_mixed_n_vectorised_matches_brute_force():
  rng = np.random.default_rng(0)
  n = rng.integers(1, 9, size=40)
  c = np.array([rng.integers(0, x + 1) for x in n])
  for k in range(1, 9):
    sel = n >= k
    got = pass_at_k(n[sel], c[sel], k)
    for g, ni, ci in zip(got, n[sel], c[sel]):
      subsets = list(itertools.combinations(range(ni), k))
      want = Fraction(sum(any(i < ci for i in s) for s in subsets), len(subsets))
      assert g == pytest.approx(float(want), abs=1e-12)


def test_full_grid_n1024_no_fp_warnings_and_monotone():
  n = 1024
  c = np.arange(n + 1)
  with np.errstate(all="raise"):
    grid = np.stack([pass_at_k(np.full_like(c, n), c, k) for k in range(1, n + 1)])  # [k, c]
  assert np.isfinite(grid).all() and grid.min() >= 0 and grid.max() <= 1
  assert (np.diff(grid, axis=0) >= -1e-12).all()  # non-decreasing in k
  assert (np.diff(grid, axis=1) >= -1e-12).all()  # non-decreasing in c
  assert (grid[:, 0] == 0).all() and (grid[:, -1] == 1).all()
  np.testing.assert_allclose(grid[0], c / n, atol=1e-15)


def test_very_large_n():
  n, c, k = 100_000, 3, 50_000
  exact = 1 - Fraction(comb(n - c, k), comb(n, k))
  with np.errstate(all="raise"):
    got = float(pass_at_k(n, c, k))
  assert got == pytest.approx(float(exact), rel=1e-10)
