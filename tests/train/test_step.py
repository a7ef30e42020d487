"""The jitted train_step: exact micro-batch accumulation, sign and mask wiring, NaN skip, sharding."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from ml_collections import ConfigDict

from simko_jax.models.config import tiny_gemma2, tiny_gemma3, tiny_llama3
from simko_jax.models.transformer import Transformer
from simko_jax.parallel import make_mesh, model_shardings
from simko_jax.train.step import (Batch, LossHParams, jit_logprobs, jit_train_step, make_optimizer,
                                  shard_batch,
                                  train_step_fn)

N, P, R = 8, 6, 5


def setup(seed=0, cfg=None):
  cfg = cfg or tiny_llama3(vocab_size=64, num_layers=2)
  model = Transformer(cfg, rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model, nnx.Param)
  return cfg, graphdef, params


def make_batch(cfg, seed=0, logp_fn=None, params=None):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, cfg.vocab_size, (N, P + R)).astype(np.int32)
  attn = np.ones((N, P + R), np.int32)
  for i in range(N):
    attn[i, : i % 3] = 0                               # left padding of the prompt
    tokens[i, : i % 3] = 0
  positions = np.maximum(np.cumsum(attn, -1) - 1, 0).astype(np.int32)
  loss_mask = np.ones((N, R), np.float32)
  loss_mask[1, 3:] = 0                                 # stopped early
  old = np.full((N, R), -4.0, np.float32)
  adv = rng.normal(size=(N,)).astype(np.float32)
  batch = Batch(tokens, attn, positions, loss_mask, old, np.zeros((N, R), np.float32), adv)
  if logp_fn is not None:                               # on-policy: old log-probs = current
    old = np.asarray(logp_fn(params, tokens, attn, positions, R))
    batch = batch._replace(old_logprobs=old)
  return jax.tree.map(jnp.asarray, batch)


def micro(batch, m):
  return jax.tree.map(lambda x: x.reshape((m, x.shape[0] // m) + x.shape[1:]), batch)


OPTIM = ConfigDict(dict(learning_rate=1e-2, schedule="constant", warmup_steps=0, weight_decay=0.0,
                        b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0))


def run_step(graphdef, params, batch, m, loss_cfg=LossHParams(alpha=0.1), tx=None):
  tx = tx or make_optimizer(OPTIM, 10)[0]
  step = jax.jit(train_step_fn(graphdef, tx, loss_cfg))
  return step(params, tx.init(params), micro(batch, m))


def flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def test_micro_batch_accumulation_is_exact():
  cfg, graphdef, params = setup()
  batch = make_batch(cfg)
  sgd = optax.sgd(1.0)  # params move by exactly the accumulated gradient (Adam would amplify noise)
  p1, _, m1 = run_step(graphdef, params, batch, 1, tx=sgd)
  p4, _, m4 = run_step(graphdef, params, batch, 4, tx=sgd)
  np.testing.assert_allclose(m1["loss"], m4["loss"], atol=1e-6)
  np.testing.assert_allclose(m1["grad_norm"], m4["grad_norm"], rtol=1e-5)
  np.testing.assert_allclose(flat(p1), flat(p4), atol=1e-6)
  for key in ("entropy", "gate_fraction", "lambda_1", "rank1_prob"):
    np.testing.assert_allclose(m1[key], m4[key], rtol=1e-5)
  assert m1["update_skipped"] == 0 and m1["num_loss_tokens"] == N * R - 2


@pytest.mark.parametrize("sign,cfg", [(1.0, None), (-1.0, None), (1.0, tiny_gemma2(vocab_size=64)),
                                      (-1.0, tiny_gemma3(vocab_size=64))], ids=["llama+", "llama-", "gemma2+", "gemma3-"])
def test_advantage_sign_moves_log_probs_the_right_way(sign, cfg):
  """A positive advantage must raise the response's log-likelihood, a negative one lower it (Gemma:
  11-token rows against a sliding window of 4, soft-capped logits)."""
  cfg, graphdef, params = setup(1, cfg)
  loss_cfg = LossHParams(method="grpo", clip_low=10.0, clip_high=10.0)
  logp = jit_logprobs(graphdef, loss_cfg, None, make_mesh(1, 1, 1, devices=jax.devices()[:1]))
  batch = make_batch(cfg, logp_fn=logp, params=params)
  batch = batch._replace(advantages=jnp.full((N,), sign))
  before = np.asarray(logp(params, batch.tokens, batch.attention_mask, batch.positions, R))
  new_params, _, _ = run_step(graphdef, params, batch, 2, loss_cfg)
  after = np.asarray(logp(new_params, batch.tokens, batch.attention_mask, batch.positions, R))
  change = ((after - before) * np.asarray(batch.loss_mask)).sum()
  assert sign * change > 0.1


def test_masked_tokens_do_not_reach_the_loss():
  cfg, graphdef, params = setup(2)
  batch = make_batch(cfg)
  changed = batch._replace(old_logprobs=batch.old_logprobs.at[1, 3:].set(5.0),
                           tokens=batch.tokens.at[1, P + 4].set(7))
  p_a, _, m_a = run_step(graphdef, params, batch, 2)
  p_b, _, m_b = run_step(graphdef, params, changed, 2)
  # Bit-exact on CPU; GPU reductions may reorder between two compilations, so allow float32 rounding.
  atol = 0 if jax.default_backend() == "cpu" else 1e-6
  np.testing.assert_allclose(m_a["loss"], m_b["loss"], atol=atol, rtol=0)
  np.testing.assert_allclose(flat(p_a), flat(p_b), atol=atol, rtol=0)


def test_non_finite_loss_skips_update():
  cfg, graphdef, params = setup(3)
  batch = make_batch(cfg)
  bad = batch._replace(advantages=batch.advantages.at[0].set(jnp.nan))
  new_params, _, metrics = run_step(graphdef, params, bad, 2)
  assert metrics["update_skipped"] == 1
  np.testing.assert_array_equal(flat(new_params), flat(params))


def test_sharded_steps_equal_single_device():
  """Several steps on the (2, 2, 2) mesh equal the same steps on one device within 1e-4."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 CPU devices")
  cfg, graphdef, params0 = setup(4)
  loss_cfg = LossHParams(alpha=0.1, chunk_size=4)
  # Adam's first update is lr * g / (|g| + eps): at eps = 1e-8 a rounding-level gradient (~1e-9) still
  # moves its param by ~lr / 10, so the sharded run's different summation order alone moved one param
  # by 0.8-1.4e-4. eps = 1e-6 keeps this a test of the sharding, not of that amplification.
  tx, _ = make_optimizer(ConfigDict({**OPTIM.to_dict(), "eps": 1e-6}), 10)
  results = {}
  for shape in [(1, 1, 1), (2, 2, 2)]:
    mesh = make_mesh(*shape, devices=jax.devices()[: int(np.prod(shape))])
    with jax.set_mesh(mesh):
      model = nnx.merge(graphdef, jax.tree.map(jnp.copy, params0))
      p_sh = model_shardings(model, mesh)
      params = jax.device_put(nnx.state(model, nnx.Param), p_sh)
      opt_state = jax.jit(tx.init)(params)
      o_sh = jax.tree.map(lambda x: x.sharding, opt_state)
      step = jit_train_step(graphdef, tx, loss_cfg, p_sh, o_sh, mesh)
      losses = []
      for i in range(3):
        params, opt_state, metrics = step(params, opt_state,
                                         shard_batch(micro(make_batch(cfg, seed=i), 2), mesh))
        losses.append(float(metrics["loss"]))
      results[shape] = (losses, flat(jax.device_get(params)))
  np.testing.assert_allclose(results[(2, 2, 2)][0], results[(1, 1, 1)][0], atol=1e-4)
  np.testing.assert_allclose(results[(2, 2, 2)][1], results[(1, 1, 1)][1], atol=1e-4)


def test_on_policy_shortcut_equals_explicit_old_logprobs():
  """One epoch over one mini-batch: old log-probs from the update's own forward == a separate pass."""
  cfg, graphdef, params = setup(5)
  explicit = LossHParams(alpha=0.1)
  logp = jit_logprobs(graphdef, explicit, None, make_mesh(1, 1, 1, devices=jax.devices()[:1]))
  batch = make_batch(cfg, logp_fn=logp, params=params)
  sgd = optax.sgd(1.0)
  p_a, _, m_a = run_step(graphdef, params, batch, 2, explicit, tx=sgd)
  p_b, _, m_b = run_step(graphdef, params, batch._replace(old_logprobs=jnp.zeros_like(
      batch.old_logprobs)), 2, dataclasses.replace(explicit, on_policy=True), tx=sgd)
  np.testing.assert_allclose(m_a["loss"], m_b["loss"], atol=1e-6)
  np.testing.assert_allclose(flat(p_a), flat(p_b), atol=1e-6)
  assert m_b["ppo_kl"] == 0


def test_micro_batch_token_mean_weights_each_micro_batch_by_its_share_of_responses():
  """verl's aggregation through the real step: with SGD(1) the update is sum_b (n_b / N) x (the update of a
  token_mean step on micro-batch b alone), and the loss the same mix of their losses."""
  cfg, graphdef, params = setup()
  batch = make_batch(cfg)
  lengths = np.array([5, 1, 2, 5, 3, 4, 1, 2])  # uneven per-row token counts: per-micro-batch means differ
  batch = batch._replace(loss_mask=jnp.asarray(np.arange(R)[None] < lengths[:, None], jnp.float32))
  sgd = optax.sgd(1.0)
  verl = LossHParams(alpha=0.1, aggregation="micro_batch_token_mean")
  p_verl, _, m_verl = run_step(graphdef, params, batch, 2, loss_cfg=verl, tx=sgd)
  halves = [jax.tree.map(lambda x, s=s: x[s], batch) for s in (slice(0, 4), slice(4, 8))]
  parts = [run_step(graphdef, params, h, 1, loss_cfg=LossHParams(alpha=0.1), tx=sgd) for h in halves]
  expected_params = jax.tree.map(lambda p0, a, b: p0 + 0.5 * (a - p0) + 0.5 * (b - p0),
                                 params, parts[0][0], parts[1][0])
  np.testing.assert_allclose(m_verl["loss"], 0.5 * (parts[0][2]["loss"] + parts[1][2]["loss"]), rtol=1e-5)
  np.testing.assert_allclose(flat(p_verl), flat(expected_params), atol=1e-6)
  _, _, m_global = run_step(graphdef, params, batch, 2, loss_cfg=LossHParams(alpha=0.1), tx=sgd)
  assert abs(float(m_verl["loss"]) - float(m_global["loss"])) > 1e-4  # a different estimator here
