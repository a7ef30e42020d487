"""Aggregation modes, and exact global normalisation when a batch is split into micro-batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.losses import AGGREGATION_MODES, aggregate, aggregation_denominator, grpo_loss, simko_loss

# Modes whose micro-batch sum equals the full-batch value; verl's micro_batch_token_mean is by design not.
EXACT_MODES = [m for m in AGGREGATION_MODES if m != "micro_batch_token_mean"]


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


@pytest.mark.parametrize("mode", EXACT_MODES)
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


def verl_actor_loss(loss_BxT, mask_BxT, micro_batches):
  """numpy transcription of verl's dp_actor.update_policy (the SimKO authors' fork), use_dynamic_bsz:
      for data in micro_batches:
          pg_loss = masked_mean(pg_losses, response_mask)      # verl_F.masked_mean: sum(x m) / sum(m)
          loss = policy_loss * (len(data) / ppo_mini_batch_size)
          loss.backward()
  returns the value whose gradient is accumulated: sum over micro-batches of that `loss`."""
  total = 0.0
  n_mini = sum(len(rows) for rows in micro_batches)
  for rows in micro_batches:
    x, m = loss_BxT[rows].astype(np.float64), mask_BxT[rows].astype(np.float64)
    total += (x * m).sum() / m.sum() * (len(rows) / n_mini)
  return total


def test_micro_batch_token_mean_matches_verl_transcription():
  rng = np.random.default_rng(3)
  b, t = 10, 7
  x = rng.normal(size=(b, t)).astype(np.float32)
  lengths = rng.integers(1, t + 1, b)
  m = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
  splits = [[0, 1, 2], [3, 4, 5, 6, 7], [8, 9]]  # verl's dynamic-bsz micro-batches are uneven
  norm = aggregation_denominator(m, "micro_batch_token_mean")
  assert float(norm) == b
  ours = sum(float(aggregate(x[r], m[r], "micro_batch_token_mean", norm)) for r in splits)
  np.testing.assert_allclose(ours, verl_actor_loss(x, m, splits), rtol=1e-6)
  # It is a different estimator from the global token mean (which ignores the micro-batching) ...
  assert abs(ours - (x * m).sum() / m.sum()) > 1e-3
  # ... and equals it with a single micro-batch.
  np.testing.assert_allclose(aggregate(x, m, "micro_batch_token_mean", norm), (x * m).sum() / m.sum(),
                             rtol=1e-6)


def test_micro_batch_token_mean_gradient_matches_verl_transcription():
  rng = np.random.default_rng(4)
  b, t, v = 6, 8, 11
  logits = jnp.asarray(rng.normal(size=(b, t, v)), jnp.float32)
  y = jnp.asarray(rng.integers(0, v, (b, t)))
  old = jnp.asarray(rng.normal(size=(b, t)) - 2.5, jnp.float32)
  adv = jnp.asarray(rng.normal(size=(b,)), jnp.float32)
  lengths = np.array([8, 2, 5, 1, 7, 3])
  mask = jnp.asarray(np.arange(t)[None] < lengths[:, None], jnp.float32)
  splits = [np.arange(0, 2), np.arange(2, 6)]

  def verl(lg):  # verl core_algos.compute_policy_loss per token, then the dp_actor weighting
    logp = jnp.take_along_axis(jax.nn.log_softmax(lg, -1), y[..., None], -1)[..., 0]
    ratio = jnp.exp(logp - old)
    a = adv[:, None]
    x = jnp.maximum(-a * ratio, -a * jnp.clip(ratio, 0.8, 1.2))
    total = 0.0
    for r in splits:
      total += jnp.sum(x[r] * mask[r]) / jnp.sum(mask[r]) * (len(r) / b)
    return total

  def ours(lg):
    norm = aggregation_denominator(mask, "micro_batch_token_mean")
    return sum(grpo_loss(logits=lg[r], targets=y[r], old_logprobs=old[r], advantages=adv[r], mask=mask[r],
                         aggregation="micro_batch_token_mean", normalizer=norm)[0] for r in splits)

  v_ref, g_ref = jax.value_and_grad(verl)(logits)
  v, g = jax.value_and_grad(ours)(logits)
  np.testing.assert_allclose(v, v_ref, rtol=1e-5)
  np.testing.assert_allclose(g, g_ref, atol=1e-6)
