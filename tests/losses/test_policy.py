"""SimKO / GRPO / PSR / NSR losses against the independent torch transcription in `reference.py`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.losses import (TokenStats, forking_gate, grpo_loss, policy_loss,
                              policy_loss_from_stats, simko_loss)
from tests.losses.reference import reference_loss

B, T, V = 6, 24, 37


def make_batch(seed, dtype=np.float32, scale=2.0):
  """Random batch with positive/negative/zero advantages, padding, rank-1 and non-rank-1 targets."""
  rng = np.random.default_rng(seed)
  logits = (rng.normal(size=(B, T, V)) * scale).astype(np.float32)
  if dtype != np.float32:
    logits = np.asarray(jnp.asarray(logits, dtype).astype(jnp.float32))
  targets = rng.integers(0, V, size=(B, T))
  greedy = rng.random((B, T)) < 0.4                      # ~40% of tokens are the rank-1 candidate
  targets = np.where(greedy, logits.argmax(-1), targets)
  # Old log-probs near the current ones so ratios land on both sides of the clip range.
  logp = jax.nn.log_softmax(jnp.asarray(logits), -1)
  lp = np.take_along_axis(np.asarray(logp), targets[..., None], -1)[..., 0]
  old = (lp + rng.normal(size=(B, T)) * 0.3).astype(np.float32)
  advantages = np.array([1.2, -0.8, 0.0, 0.5, -1.5, 0.9], np.float32)
  mask = np.ones((B, T), np.float32)
  mask[1, :5] = 0          # left padding
  mask[3, -7:] = 0         # right padding (stopped early)
  mask[4, :2] = 0
  return logits, targets, old, advantages, mask


def jax_loss_and_grad(fn, logits, targets, old, advantages, mask, **kw):
  def loss_fn(x):
    return fn(logits=x, targets=jnp.asarray(targets), old_logprobs=jnp.asarray(old),
              advantages=jnp.asarray(advantages), mask=jnp.asarray(mask), **kw)[0]
  value, grad = jax.value_and_grad(loss_fn)(jnp.asarray(logits))
  return np.asarray(value, np.float64), np.asarray(grad, np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("options", [
    dict(),                                                   # authors' defaults
    dict(lam_on="ratio", lam=1.3),                            # the paper's equation
    dict(alpha=0.3, top_k=5, tau=0.5),                        # large alpha exercises the top-K term
    dict(gate="absolute", tau=2.5, alpha=0.2),
    dict(clip_low=0.1, clip_high=0.28, temperature=0.7, alpha=0.1),
])
def test_simko_matches_reference(seed, options):
  logits, targets, old, adv, mask = make_batch(seed)
  rng = np.random.default_rng(100 + seed)
  k = options.get("top_k", 3)
  old_topk = rng.normal(size=(B, T, k)).astype(np.float32) - 2.0  # must cancel out of the gradient
  ref_value, ref_grad = reference_loss(logits, targets, old, adv, mask, method="simko",
                                       old_topk_logprobs=old_topk, **options)
  value, grad = jax_loss_and_grad(simko_loss, logits, targets, old, adv, mask, **options)
  np.testing.assert_allclose(value, ref_value, atol=1e-5, rtol=0)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-5, rtol=0)
  assert np.abs(ref_grad).max() > 1e-3  # the comparison is not vacuous


@pytest.mark.parametrize("method", ["grpo", "psr", "nsr"])
def test_baselines_match_reference(method):
  logits, targets, old, adv, mask = make_batch(7)
  ref_value, ref_grad = reference_loss(logits, targets, old, adv, mask, method=method,
                                       clip_high=0.28)
  value, grad = jax_loss_and_grad(policy_loss, logits, targets, old, adv, mask, method=method,
                                  clip_high=0.28)
  np.testing.assert_allclose(value, ref_value, atol=1e-5, rtol=0)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("psr_weight", [0.1, 0.5])
def test_w_reinforce_matches_reference(psr_weight):
  """W-REINFORCE: positive advantages scaled by psr_weight, negative ones untouched."""
  logits, targets, old, adv, mask = make_batch(10)
  ref_value, ref_grad = reference_loss(logits, targets, old, adv, mask, method="w_reinforce",
                                       psr_weight=psr_weight)
  value, grad = jax_loss_and_grad(policy_loss, logits, targets, old, adv, mask,
                                  method="w_reinforce", psr_weight=psr_weight)
  np.testing.assert_allclose(value, ref_value, atol=1e-5, rtol=0)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-5, rtol=0)
  # Not GRPO in disguise: the positive rows' gradient is exactly psr_weight times GRPO's.
  _, grpo_grad = jax_loss_and_grad(policy_loss, logits, targets, old, adv, mask, method="grpo")
  positive = adv > 0
  np.testing.assert_allclose(grad[positive], psr_weight * grpo_grad[positive], atol=1e-6, rtol=1e-5)
  np.testing.assert_array_equal(grad[~positive], grpo_grad[~positive])
  assert np.abs(grpo_grad[positive]).max() > 1e-3


def _dual_clip_tokens(logits, targets, old, adv, mask, c):
  """Valid tokens of negative-advantage responses whose ratio exceeds c (where dual-clip acts)."""
  logp = np.asarray(jax.nn.log_softmax(jnp.asarray(logits), -1))
  ratio = np.exp(np.take_along_axis(logp, targets[..., None], -1)[..., 0] - old)
  return (adv[:, None] < 0) & (mask > 0) & (ratio > c)


@pytest.mark.parametrize("method", ["grpo", "simko"])
@pytest.mark.parametrize("clip_ratio_c", [1.3, 3.0])
def test_dual_clip_matches_reference(method, clip_ratio_c):
  """Dual-clip bounds the loss of a negative-advantage token at -A c: value and gradient."""
  logits, targets, old, adv, mask = make_batch(11)
  old = old.copy()
  old[4, 10:16] -= 2.0                                 # ratios ~e^2 on a negative response
  active = _dual_clip_tokens(logits, targets, old, adv, mask, clip_ratio_c)
  assert active.sum() >= 3                             # the comparison is not vacuous
  kw = dict(method=method, clip_ratio_c=clip_ratio_c, alpha=0.2)
  ref_value, ref_grad = reference_loss(logits, targets, old, adv, mask, **kw)
  value, grad = jax_loss_and_grad(policy_loss, logits, targets, old, adv, mask, **kw)
  np.testing.assert_allclose(value, ref_value, atol=1e-5, rtol=0)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-5, rtol=0)
  # Where it acts the surrogate is the constant -A c: no gradient through those tokens.
  off_value, off_grad = jax_loss_and_grad(policy_loss, logits, targets, old, adv, mask,
                                          method=method, alpha=0.2)
  assert value < off_value - 1e-4
  rows, cols = np.nonzero(active)
  assert np.abs(off_grad[rows, cols]).max() > 1e-4 and np.all(grad[rows, cols] == 0)


def test_bf16_logits_match_reference_on_rounded_inputs():
  logits, targets, old, adv, mask = make_batch(3, dtype=jnp.bfloat16)
  ref_value, ref_grad = reference_loss(logits, targets, old, adv, mask, alpha=0.2)
  value, grad = jax_loss_and_grad(simko_loss, jnp.asarray(logits, jnp.bfloat16), targets, old,
                                  adv, mask, alpha=0.2)
  np.testing.assert_allclose(value, ref_value, atol=1e-5, rtol=0)
  # Gradient w.r.t. bf16 inputs is itself bf16: compare at bf16 resolution.
  np.testing.assert_allclose(grad, ref_grad, atol=1e-5 + 8e-3 * np.abs(ref_grad).max(), rtol=0)


@pytest.mark.parametrize("reduction", [dict(alpha=0.0, lam=1.0), dict(tau=1.0)])
def test_simko_reduces_to_grpo_bit_for_bit(reduction):
  logits, targets, old, adv, mask = make_batch(4)
  g_value, g_grad = jax_loss_and_grad(grpo_loss, logits, targets, old, adv, mask)
  s_value, s_grad = jax_loss_and_grad(simko_loss, logits, targets, old, adv, mask, **reduction)
  assert np.array_equal(g_value, s_value)
  assert np.array_equal(g_grad, s_grad)


def test_simko_differs_from_grpo_at_defaults():
  logits, targets, old, adv, mask = make_batch(5)
  _, g_grad = jax_loss_and_grad(grpo_loss, logits, targets, old, adv, mask)
  _, s_grad = jax_loss_and_grad(simko_loss, logits, targets, old, adv, mask)
  assert np.abs(g_grad - s_grad).max() > 1e-6


def test_positive_term_value_is_ratio_and_gradient_spreads_over_top_k():
  """One gated positive token inside the clip range: d loss / d logp[v(k)] = -A alpha gamma / K."""
  alpha, k, adv, lp, old = 0.3, 3, 0.7, -1.0, -1.05
  gamma = np.exp(lp - old)
  entropy = jnp.array([[5.0, 0.1]])  # token 0 is gated under an absolute threshold of 1.0
  mask = jnp.array([[1.0, 0.0]])

  def loss_of(logp, topk_logp):
    stats = TokenStats(logp=logp, entropy=entropy, topk_logp=topk_logp,
                       is_rank1=jnp.zeros((1, 2), bool))
    return policy_loss_from_stats(stats, old_logprobs=jnp.full((1, 2), old), method="simko",
                                  advantages=jnp.array([adv]), mask=mask, top_k=k, alpha=alpha,
                                  gate="absolute", tau=1.0)[0]

  logp = jnp.full((1, 2), lp)
  topk_logp = jnp.array([[[-0.5, -1.0, -2.0, -3.0, -4.0]] * 2])
  value = loss_of(logp, topk_logp)
  np.testing.assert_allclose(value, -adv * gamma, rtol=1e-6)       # value is GRPO's: -A gamma
  d_logp, d_topk = jax.grad(loss_of, argnums=(0, 1))(logp, topk_logp)
  np.testing.assert_allclose(d_logp[0, 0], -adv * (1 - alpha) * gamma, rtol=1e-6)
  np.testing.assert_allclose(d_topk[0, 0, :k], [-adv * alpha * gamma / k] * k, rtol=1e-6)
  assert np.all(np.asarray(d_topk[0, 0, k:]) == 0)                 # beyond K: no gradient
  assert np.all(np.asarray(d_topk[0, 1]) == 0)                     # padding: no gradient


@pytest.mark.parametrize("tau", [0.0, 0.6, 0.8, 0.95])
def test_quantile_gate_selects_expected_share(tau):
  rng = np.random.default_rng(0)
  entropy = rng.random((3, 100)).astype(np.float32)
  mask = np.ones((3, 100), np.float32)
  mask[1, 60:] = 0                                      # a shorter response: 60 valid tokens
  w = np.asarray(forking_gate(jnp.asarray(entropy), jnp.asarray(mask), tau))
  for i in range(3):
    valid = mask[i] > 0
    thr = np.quantile(entropy[i][valid], tau)           # numpy's default is linear interpolation
    np.testing.assert_array_equal(w[i], (entropy[i] > thr) & valid)
  assert w[0].sum() == 100 - int(np.floor(tau * 99)) - 1  # distinct values: exact share
  assert w[1, 60:].sum() == 0


def test_zero_advantage_and_padding_give_no_gradient():
  logits, targets, old, adv, mask = make_batch(6)
  _, grad = jax_loss_and_grad(simko_loss, logits, targets, old, adv, mask)
  assert np.all(grad[2] == 0)            # advantage 0
  assert np.all(grad[1, :5] == 0)        # padded positions
  assert np.abs(grad[0]).max() > 0


def test_metrics_are_finite_and_in_range():
  logits, targets, old, adv, mask = make_batch(8)
  _, metrics = simko_loss(logits=jnp.asarray(logits), targets=jnp.asarray(targets),
                          old_logprobs=jnp.asarray(old), advantages=jnp.asarray(adv),
                          mask=jnp.asarray(mask))
  for name, value in metrics.items():
    assert np.isfinite(value), name
  for name in ["gate_fraction", "clipfrac_high", "clipfrac_low", "rank1_prob", "boosted_fraction"]:
    assert 0.0 <= metrics[name] <= 1.0
  assert 0.15 < metrics["gate_fraction"] < 0.25        # tau 0.8 gates ~20% of each response
  probs = [float(metrics[f"rank{n}_prob"]) for n in range(1, 6)]
  assert probs == sorted(probs, reverse=True)
  assert metrics["lambda_1"] >= metrics["lambda_2"] >= metrics["lambda_3"]


def test_jit_and_vmap_compatible():
  logits, targets, old, adv, mask = make_batch(9)
  args = dict(logits=jnp.asarray(logits), targets=jnp.asarray(targets),
              old_logprobs=jnp.asarray(old), advantages=jnp.asarray(adv), mask=jnp.asarray(mask))
  eager = simko_loss(**args)[0]
  jitted = jax.jit(lambda a: simko_loss(**a)[0])(args)
  np.testing.assert_allclose(eager, jitted, atol=1e-6)
  stacked = jax.tree.map(lambda x: jnp.stack([x, x]), args)
  per = jax.vmap(lambda a: simko_loss(**a)[0])(stacked)
  np.testing.assert_allclose(per, [eager, eager], atol=1e-6)
