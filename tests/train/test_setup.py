"""A run built from a config trains with that config's loss: method, W-REINFORCE weight, dual-clip and
temperature travel from `config.algo` / `config.rollout` through `build_run` into the jitted step."""

import jax
import numpy as np
from flax import nnx

from configs.tiny_random import get_config
from simko_jax.train.setup import build_run
from simko_jax.train.step import Batch
from tests.losses.reference import reference_loss

PROMPT_LEN, RESPONSE_LEN = 6, 5


def wiring_config(out_dir):
  cfg = get_config()
  cfg.out_dir = str(out_dir)
  cfg.eval.enabled = False
  cfg.rollout.group_size = cfg.algo.micro_batch_size = jax.device_count()  # one row per device
  cfg.algo.method = "w_reinforce"
  cfg.algo.psr_weight = 0.3
  cfg.algo.clip_ratio_c = 1.5
  cfg.algo.clip_high = 0.28
  cfg.rollout.temperature = 0.7
  return cfg


def crafted_batch(logits_NxRxV, tokens, temperature, rng):
  """Advantages of both signs and old log-probs that put some negative-advantage ratios above 1.5."""
  n = tokens.shape[0]
  targets_NxR = tokens[:, PROMPT_LEN:]
  logp = jax.nn.log_softmax(logits_NxRxV / temperature, axis=-1)
  logp_NxR = np.take_along_axis(np.asarray(logp), targets_NxR[..., None], -1)[..., 0]
  old_NxR = (logp_NxR + rng.normal(scale=0.1, size=logp_NxR.shape)).astype(np.float32)
  advantages_N = np.resize(np.array([1.0, -1.0, 0.5, -0.7], np.float32), n)
  old_NxR[1, :3] -= 1.0                               # ratio ~e: dual-clip acts on these tokens
  loss_mask_NxR = np.ones_like(old_NxR)
  loss_mask_NxR[2, 3:] = 0
  return old_NxR, advantages_N, loss_mask_NxR


def test_config_loss_reaches_the_train_step(tmp_path):
  cfg = wiring_config(tmp_path)
  run = build_run(cfg)
  try:
    rows = cfg.algo.mini_batch_prompts * cfg.rollout.group_size     # one optimizer step's responses
    micro = cfg.algo.micro_batch_size
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 60, (rows, PROMPT_LEN + RESPONSE_LEN)).astype(np.int32)
    attention = np.ones_like(tokens)
    positions = np.tile(np.arange(tokens.shape[1], dtype=np.int32), (rows, 1))
    model = nnx.merge(run.graphdef, run.params)
    logits_NxTxV = np.asarray(model(tokens, positions, attention), np.float32)
    logits_NxRxV = logits_NxTxV[:, PROMPT_LEN - 1:-1]                   # predict the response tokens
    old, adv, mask = crafted_batch(logits_NxRxV, tokens, cfg.rollout.temperature, rng)
    batch = Batch(tokens, attention, positions, mask, old, np.zeros_like(old), adv)
    mb = jax.tree.map(lambda x: x.reshape((rows // micro, micro) + x.shape[1:]), batch)
    with jax.set_mesh(run.mesh):
      _, _, metrics = run.train_step(run.params, run.opt_state, run.put_rows_micro(mb))
  finally:
    run.close()

  a = cfg.algo
  reference = lambda **kw: float(reference_loss(
      logits_NxRxV, tokens[:, PROMPT_LEN:], old, adv, mask, temperature=cfg.rollout.temperature,
      clip_low=a.clip_low, clip_high=a.clip_high, **kw)[0])
  expected = reference(method="w_reinforce", psr_weight=a.psr_weight, clip_ratio_c=a.clip_ratio_c)
  np.testing.assert_allclose(float(metrics["loss"]), expected, atol=2e-5, rtol=0)
  # Each setting changes the value here, so dropping any one of them on the way fails the assert above.
  for other in (dict(method="grpo", clip_ratio_c=a.clip_ratio_c),
                dict(method="w_reinforce", psr_weight=1.0, clip_ratio_c=a.clip_ratio_c),
                dict(method="w_reinforce", psr_weight=a.psr_weight)):
    assert abs(reference(**other) - expected) > 1e-3, other
  assert abs(expected - float(reference_loss(
      logits_NxRxV * 0.7, tokens[:, PROMPT_LEN:], old, adv, mask, method="w_reinforce",
      psr_weight=a.psr_weight, clip_ratio_c=a.clip_ratio_c, clip_high=a.clip_high)[0])) > 1e-3
