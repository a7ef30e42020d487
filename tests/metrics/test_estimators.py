"""pass@k / maj@k against brute-force enumeration and exact rational references."""
import itertools
from collections import Counter
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from simko_jax.metrics.estimators import maj_at_k, mean_pass_at_k, pass_at_k


def _brute_pass_at_k(n: int, c: int, k: int) -> Fraction:
  """Fraction of k-subsets of n samples (first c correct) containing at least one correct sample."""
  subsets = list(itertools.combinations(range(n), k))
  return Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))


def test_pass_at_k_matches_enumeration_small_n():
  for n in range(1, 11):
    for c in range(n + 1):
      for k in range(1, n + 1):
        got = float(pass_at_k(n, c, k))
        assert got == pytest.approx(float(_brute_pass_at_k(n, c, k)), abs=1e-12), (n, c, k)


def test_pass_at_k_vectorised_and_edges():
  n = np.array([10, 10, 10, 5, 1])
  c = np.array([0, 10, 3, 4, 1])
  got = pass_at_k(n[:4], c[:4], 2)
  assert got.shape == (4,) and got.dtype == np.float64
  np.testing.assert_allclose(got, [0.0, 1.0, 1 - comb(7, 2) / comb(10, 2), 1.0], atol=1e-15)
  np.testing.assert_allclose(pass_at_k(n, c, 1), c / n, atol=1e-15)  # pass@1 = c/n
  assert pass_at_k(5, 4, 2) == 1.0  # n - c < k
  np.testing.assert_allclose(pass_at_k([4, 4], [1, 1], [1, 4]), [0.25, 1.0])
  assert mean_pass_at_k([4, 4], [0, 4], 1) == 0.5
  with pytest.raises(ValueError):
    pass_at_k(4, 5, 1)
  with pytest.raises(ValueError):
    pass_at_k(4, 1, 5)
  with pytest.raises(TypeError):
    pass_at_k(4.0, 1, 1)


def test_pass_at_k_large_n_matches_exact_rationals():
  n = 1024
  cs = np.arange(0, n + 1)
  for k in (1, 2, 8, 64, 256, 1000, 1024):
    got = pass_at_k(np.full_like(cs, n), cs, k)
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1))
    for c in (0, 1, 2, 7, 100, 512, 1000, 1024 - k, 1024 - k + 1, 1024):
      if not 0 <= c <= n:
        continue
      exact = 1 - Fraction(comb(n - c, k), comb(n, k))
      assert got[c] == pytest.approx(float(exact), rel=1e-11, abs=1e-300), (k, c)


def _brute_maj(answers, correct, subset) -> bool:
  votes = [answers[i] for i in subset if answers[i] is not None]
  if not votes:
    return False
  winner = Counter(votes).most_common(1)[0][0]  # ties: first inserted = earliest occurrence
  return correct[answers.index(winner)]


def _brute_maj_expectation(answers, correct, k) -> float:
  subsets = list(itertools.combinations(range(len(answers)), k))
  return sum(_brute_maj(answers, correct, s) for s in subsets) / len(subsets)


def _random_problem(rng, n):
  pool = ["a", "b", "c", None]
  answers = [pool[i] for i in rng.integers(0, 4, size=n)]
  correct = [a == "a" for a in answers]
  return answers, correct


def test_maj_at_k_exact_matches_enumeration():
  rng = np.random.default_rng(0)
  problems = [_random_problem(rng, n) for n in range(1, 11) for _ in range(3)]
  for k in range(1, 11):
    subset = [(a, c) for a, c in problems if len(a) >= k]
    got = maj_at_k([a for a, _ in subset], [c for _, c in subset], k, method="exact")
    want = [_brute_maj_expectation(a, c, k) for a, c in subset]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_maj_at_k_first_k_and_monte_carlo():
  answers = [["b", "a", "a", "b", None, "a", "c", "a"], [None, None, "x", "y"]]
  correct = [[a == "a" for a in answers[0]], [False, False, False, True]]
  np.testing.assert_array_equal(maj_at_k(answers, correct, 4, method="first_k"), [0.0, 0.0])  # tie -> 'b'
  np.testing.assert_array_equal(maj_at_k(answers, correct, 3, method="first_k"), [1.0, 0.0])
  exact = maj_at_k(answers, correct, 4, method="exact")
  mc = maj_at_k(answers, correct, 4, method="monte_carlo", num_draws=4000, seed=1)
  np.testing.assert_allclose(mc, exact, atol=0.03)
  np.testing.assert_array_equal(mc, maj_at_k(answers, correct, 4, method="monte_carlo", num_draws=4000,
                                             seed=1))  # seeded: reproducible
  np.testing.assert_allclose(maj_at_k(answers, correct, 4, method="auto", max_exact_subsets=10,
                                      num_draws=4000, seed=1), mc)
  assert maj_at_k([[None, None]], [[False, False]], 1, method="exact")[0] == 0.0
  with pytest.raises(ValueError):
    maj_at_k(answers, correct, 9)
