"""The vectorised paired bootstrap equals an explicit resampling loop, and its interval behaves."""

import numpy as np

from experiments.paired_bootstrap import paired_bootstrap, seeds_for_half_width


def test_weights_form_equals_explicit_resampling():
  rng = np.random.default_rng(1)
  d = rng.normal(size=(5, 7))
  out = paired_bootstrap(d, num_resamples=50, seed=3)
  # The same draws, done the slow way: rebuild the index draws from the same generator.
  g = np.random.default_rng(3)
  ws = g.multinomial(5, np.full(5, 0.2), size=50)
  wp = g.multinomial(7, np.full(7, 1 / 7), size=50)
  for b in range(50):
    rows = np.repeat(np.arange(5), ws[b])
    cols = np.repeat(np.arange(7), wp[b])
    np.testing.assert_allclose(out["resamples"][b], d[np.ix_(rows, cols)].mean(), rtol=1e-12)
  assert out["mean"] == d.mean()


def test_interval_covers_the_truth_and_shrinks_with_seeds():
  rng = np.random.default_rng(0)
  # seed effect sd 5, problem noise sd 20, true difference +1
  make = lambda s: 1 + rng.normal(0, 5, (s, 1)) + rng.normal(0, 20, (s, 256))
  small, large = paired_bootstrap(make(4)), paired_bootstrap(make(64))
  assert large["half_width"] < small["half_width"]
  assert large["lo"] < 1 < large["hi"]
  # ~1.96 * sqrt(25/64 + 2 * 400/(64*256)) = 1.30 (the seed-level noise, and the cell noise once
  # through the seed draw and once through the problem draw)
  assert 1.0 < large["half_width"] < 1.7


def test_seeds_for_half_width():
  assert seeds_for_half_width(5.6, 2.0) == 31
  assert seeds_for_half_width(1.0, 2.0) == 1
