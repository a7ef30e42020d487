"""Token statistics against a direct numpy computation over the full softmax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.losses import token_stats_from_logits


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_stats_match_numpy(temperature):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 50)).astype(np.float32) * 3
  targets = rng.integers(0, 50, size=(3, 5))
  targets[0, 0] = logits[0, 0].argmax()
  stats = token_stats_from_logits(jnp.asarray(logits), jnp.asarray(targets), num_candidates=7,
                                  temperature=temperature)
  z = logits.astype(np.float64) / temperature
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  p = np.exp(logp)
  np.testing.assert_allclose(stats.logp, np.take_along_axis(logp, targets[..., None], -1)[..., 0],
                             atol=1e-5)
  np.testing.assert_allclose(stats.entropy, -(p * logp).sum(-1), atol=1e-5)
  np.testing.assert_allclose(stats.topk_logp, -np.sort(-logp, -1)[..., :7], atol=1e-5)
  np.testing.assert_array_equal(stats.is_rank1, targets == logits.argmax(-1))
  assert bool(stats.is_rank1[0, 0])


def test_entropy_is_stop_gradient_by_default():
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(2, 9)), jnp.float32)
  targets = jnp.array([0, 3])
  g = jax.grad(lambda x: token_stats_from_logits(x, targets).entropy.sum())(logits)
  assert np.all(np.asarray(g) == 0)
  g = jax.grad(lambda x: token_stats_from_logits(x, targets, entropy_grad=True).entropy.sum())(
      logits)
  assert np.abs(np.asarray(g)).max() > 0


def test_topk_gradient_flows_to_candidates_only():
  logits = jnp.asarray(np.random.default_rng(2).normal(size=(1, 20)), jnp.float32)
  g = jax.grad(lambda x: token_stats_from_logits(x, jnp.array([0]), num_candidates=3)
               .topk_logp[..., 1].sum())(logits)
  # d logp[v2] / d z = onehot(v2) - softmax(z)
  p = np.asarray(jax.nn.softmax(logits))
  expected = -p.copy()
  expected[0, np.argsort(-np.asarray(logits[0]))[1]] += 1
  np.testing.assert_allclose(g, expected, atol=1e-6)


def test_num_candidates_capped_at_vocab():
  stats = token_stats_from_logits(jnp.zeros((2, 4)), jnp.array([0, 1]), num_candidates=10)
  assert stats.topk_logp.shape == (2, 4)


def test_rank1_ties_resolve_to_the_lowest_id_like_argmax():
  # bf16-like logits with exact ties at the maximum (ids 1 and 3) and elsewhere (ids 0 and 4).
  logits = jnp.asarray([[0.5, 2.0, 1.0, 2.0, 0.5]] * 5, jnp.bfloat16)
  targets = jnp.arange(5)
  stats = token_stats_from_logits(logits, targets)
  want = np.asarray(targets) == np.argmax(np.asarray(logits, np.float32), axis=-1)
  np.testing.assert_array_equal(np.asarray(stats.is_rank1), want)
  assert np.asarray(stats.is_rank1).tolist() == [False, True, False, False, False]


def test_entropy_gradient_matches_autodiff_of_the_definition():
  logits = jax.random.normal(jax.random.key(3), (4, 11)) * 2.0
  targets = jnp.zeros((4,), jnp.int32)

  def ours(z):
    return jnp.sum(token_stats_from_logits(z, targets, entropy_grad=True).entropy)

  def reference(z):
    logp = jax.nn.log_softmax(z, axis=-1)
    return jnp.sum(-jnp.sum(jnp.exp(logp) * logp, axis=-1))

  np.testing.assert_allclose(ours(logits), reference(logits), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(ours)(logits), jax.grad(reference)(logits), atol=1e-6)
