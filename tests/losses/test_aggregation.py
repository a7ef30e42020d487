"""Aggregation modes, and exact global normalisation when a batch is split into micro-batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.losses import AGGREGATION_MODES, aggregate, aggregation_denominator, simko_loss


def test_modes_match_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 6)).astype(np.float32)
  m = (rng.random((4, 6)) > 0.3).astype(np.float32)
  m[2] = 0
  np.testing.assert_allclose(aggregate(x, m, "token_mean"), (x * m).sum() / m.sum(), rtol=1e-6)
  rows = [i for i in range(4) if m[i].sum() > 0]
  seq_means = [(x[i] * m[i]).sum() / m[i].sum() for i in rows]
  np.testing.assert_allclose(aggregate(x, m, "seq_mean_token_mean"), np.mean(seq_means), rtol=1e-6)
  seq_sums = [(x[i] * m[i]).sum() for i in rows]
  np.testing.assert_allclose(aggregate(x, m, "seq_mean_token_sum"), np.mean(seq_sums), rtol=1e-6)
  assert aggregate(x, np.zeros_like(m), "token_mean") == 0


def test_unknown_mode_is_refused():
  with pytest.raises(ValueError, match="token_mean"):
    aggregate(jnp.ones((1, 1)), jnp.ones((1, 1)), "mean")


@pytest.mark.parametrize("mode", AGGREGATION_MODES)
def test_micro_batches_with_global_normalizer_equal_full_batch(mode):
  rng = np.random.default_rng(1)
  b, t, v = 8, 10, 17
  logits = jnp.asarray(rng.normal(size=(b, t, v)), jnp.float32)
  y = jnp.asarray(rng.integers(0, v, (b, t)))
  old = jnp.asarray(rng.normal(size=(b, t)) - 3, jnp.float32)
  adv = jnp.asarray(rng.normal(size=(b,)), jnp.float32)
  mask = jnp.asarray(rng.random((b, t)) > 0.25, jnp.float32)

  def loss(lg, sl, normalizer=None):
    return simko_loss(logits=lg, targets=y[sl], old_logprobs=old[sl], advantages=adv[sl],
                      mask=mask[sl], aggregation=mode, normalizer=normalizer, alpha=0.1)[0]

  full_v, full_g = jax.value_and_grad(loss)(logits, slice(None))
  norm = aggregation_denominator(mask, mode)
  parts = [slice(0, 3), slice(3, 8)]  # uneven split
  vs, gs = zip(*[jax.value_and_grad(loss)(logits[s], s, norm) for s in parts])
  np.testing.assert_allclose(sum(vs), full_v, atol=1e-6)
  np.testing.assert_allclose(jnp.concatenate(gs), full_g, atol=1e-6)
