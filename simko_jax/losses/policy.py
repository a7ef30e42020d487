"""Policy-gradient losses for RLVR: GRPO, SimKO, PSR, NSR and W-REINFORCE, from token statistics.

Everything follows `SIMKO_METHOD.md`. Per valid response token (i, l):

  gamma = exp(logp - old_logp)                          importance ratio (log-ratio clipped to +-20)
  w     = 1[H > thr_i]                                  forking-token gate, H stop-gradient (`forking_gate`)
  A > 0 (SimKO):  r = gamma + alpha w (mean_k sg(gamma) exp(logp[v(k)] - sg(logp[v(k)])) - gamma)
                  value == gamma exactly (clipping decisions are GRPO's); gradient
                  (1 - alpha w) gamma grad logp_y + (alpha w / top_k) gamma sum_k grad logp[v(k)]
  A < 0 (SimKO):  at w = 1 and y rank-1, A <- lam A ("advantage", released code, default)
                  or r <- lam r ("ratio", the paper's equation; this moves the clip boundary)
  loss  = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))   [optionally dual-clip at -A c for A < 0]

GRPO is SimKO with alpha = 0 and lam = 1, bit for bit (the extra terms add exact zeros). PSR / NSR keep
only tokens of positive / negative responses (others get advantage 0 but still count in the token
normaliser); W-REINFORCE scales positive advantages by `psr_weight` (0.1 in Zhu et al. 2025).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.hparams import GATE_MODES, LAM_MODES, METHODS, NUM_RANK_PROBS, LossHParams, resolve
from simko_jax.losses.advantages import broadcast_advantages
from simko_jax.losses.aggregation import aggregate, masked_mean
from simko_jax.losses.kl import kl_penalty
from simko_jax.losses.token_stats import TokenStats
from simko_jax.metrics.concentration import concentration_metrics



def forking_gate(entropy_BxT: jax.Array, mask_BxT: jax.Array, tau: float,
                 mode: str = LossHParams.gate) -> jax.Array:
  """The forking-token gate w = 1[H > thr_i] over valid tokens, as float32 [B, T].

  quantile: thr_i is the tau-quantile (linear interpolation, as `torch.quantile`) of H over the valid
    tokens of response i, so ~(1 - tau) of each response's tokens are gated; tau = 1 gates nothing.
  absolute: thr_i = tau for every response (tau is then an entropy in nats).
  The comparison is strict. Entropy is stop-gradient: the gate never carries gradient.
  """
  entropy = jax.lax.stop_gradient(entropy_BxT.astype(jnp.float32))
  valid = mask_BxT > 0
  if mode == "absolute":
    threshold_Bx1 = jnp.full(entropy.shape[:-1] + (1,), tau, jnp.float32)
  elif mode == "quantile":
    sorted_BxT = jnp.sort(jnp.where(valid, entropy, jnp.inf), axis=-1)  # valid tokens first
    count_B = jnp.sum(valid, axis=-1).astype(jnp.float32)
    pos_B = jnp.maximum(tau * (count_B - 1.0), 0.0)
    lo_B = jnp.floor(pos_B)
    hi_B = jnp.ceil(pos_B)
    v_lo = jnp.take_along_axis(sorted_BxT, lo_B.astype(jnp.int32)[:, None], axis=-1)
    v_hi = jnp.take_along_axis(sorted_BxT, hi_B.astype(jnp.int32)[:, None], axis=-1)
    threshold_Bx1 = v_lo + (pos_B - lo_B)[:, None] * (v_hi - v_lo)
    threshold_Bx1 = jnp.where(count_B[:, None] > 0, threshold_Bx1, jnp.inf)
  else:
    raise ValueError(f"gate mode {mode!r} is not one of {GATE_MODES}")
  return ((entropy > threshold_Bx1) & valid).astype(jnp.float32)


def policy_loss_from_stats(
    stats: TokenStats,
    *,
    old_logprobs: jax.Array | None,
    advantages: jax.Array,
    mask: jax.Array,
    normalizer: jax.Array | float | None = None,
    ref_logprobs: jax.Array | None = None,
    hparams: LossHParams | None = None,
    **overrides,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The policy loss and its metrics from precomputed `TokenStats` ([B, T] fields, [B, T, C] top-C).

  Args:
    stats: current-policy statistics; `stats.topk_logp` must hold at least `top_k` candidates.
    old_logprobs: [B, T] log-probs of the sampled tokens under the behaviour policy; unused (may be
      None) when `on_policy`, which takes sg(stats.logp).
    advantages: [B] per response or [B, T] per token.
    mask: [B, T] {0,1} valid response tokens.
    normalizer: global aggregation denominator for micro-batching (see `losses.aggregation`).
    ref_logprobs: [B, T] reference-policy log-probs; used only when kl_coef != 0.
    hparams: the hyper-parameters (default `LossHParams()`, the authors' settings), and `overrides`
      any of its fields by name (`method="grpo"`, `alpha=0.05`, ...). Fields, defaults, ranges and
      docs: `simko_jax.hparams.LossHParams`. `entropy_coef` needs `stats.entropy` built with
      `entropy_grad=True` to have effect; `temperature` and `chunk_size` are not used here.
  Returns:
    (loss scalar float32, metrics dict of float32 scalars).
  """
  hp = resolve(LossHParams, hparams, **overrides)
  if hp.method not in METHODS:
    raise ValueError(f"policy loss method {hp.method!r} is not one of {METHODS}")
  if hp.lam_on not in LAM_MODES:
    raise ValueError(f"lam_on {hp.lam_on!r} is not one of {LAM_MODES}")
  mask = mask.astype(jnp.float32)
  logp = stats.logp.astype(jnp.float32)
  if hp.on_policy:  # the behaviour policy is the current one: same value, no separate forward
    old_logprobs = jax.lax.stop_gradient(logp)
  log_ratio = jnp.clip(logp - old_logprobs.astype(jnp.float32), -20.0, 20.0)
  ratio, adv, metrics = _method_ratio_and_advantage(
      stats, jnp.exp(log_ratio), broadcast_advantages(advantages, mask), mask, hp)

  clipped_ratio = jnp.clip(ratio, 1.0 - hp.clip_low, 1.0 + hp.clip_high)
  pg_unclipped = -adv * ratio
  pg_clipped = -adv * clipped_ratio
  pg = jnp.maximum(pg_unclipped, pg_clipped)
  if hp.clip_ratio_c is not None:
    pg = jnp.where(adv < 0, jnp.minimum(pg, -adv * hp.clip_ratio_c), pg)
  loss = aggregate(pg, mask, hp.aggregation, normalizer)
  metrics["pg_loss"] = loss

  if ref_logprobs is not None and hp.kl_coef != 0.0:
    kl = kl_penalty(logp, ref_logprobs, hp.kl_estimator)
    kl_loss = aggregate(kl, mask, hp.aggregation, normalizer)
    loss = loss + hp.kl_coef * kl_loss
    metrics["kl_loss"] = kl_loss
  if hp.entropy_coef != 0.0:
    loss = loss - hp.entropy_coef * aggregate(stats.entropy, mask, hp.aggregation, normalizer)

  clip_active = (pg_clipped > pg_unclipped).astype(jnp.float32)
  metrics["clipfrac_high"] = masked_mean(clip_active * (ratio > 1.0), mask)
  metrics["clipfrac_low"] = masked_mean(clip_active * (ratio < 1.0), mask)
  metrics["ppo_kl"] = masked_mean(-jax.lax.stop_gradient(log_ratio), mask)
  metrics["entropy"] = masked_mean(jax.lax.stop_gradient(stats.entropy), mask)
  metrics["rank1_fraction"] = masked_mean(stats.is_rank1, mask)
  metrics.update(concentration_metrics(stats.topk_logp, logp, mask, num_lambda=max(hp.top_k, 3),
                                       num_rank_probs=NUM_RANK_PROBS))
  return loss, jax.tree.map(lambda x: jax.lax.stop_gradient(jnp.asarray(x, jnp.float32)), metrics)


def _method_ratio_and_advantage(stats: TokenStats, gamma_BxT: jax.Array, adv_BxT: jax.Array,
                                mask_BxT: jax.Array, hp: LossHParams):
  """The method's ratio r and advantage A per token ([B, T] float32 each), and its own metrics."""
  positive = adv_BxT > 0
  negative = adv_BxT < 0
  ratio, adv, metrics = gamma_BxT, adv_BxT, {}
  if hp.method == "simko":
    w = forking_gate(stats.entropy, mask_BxT, hp.tau, hp.gate)
    topk_logp = stats.topk_logp[..., :hp.top_k].astype(jnp.float32)  # [B, T, top_k]
    # Value sg(gamma) * exp(0) == gamma; gradient gamma * grad logp[v(k)].
    topk_term = jnp.mean(
        jax.lax.stop_gradient(gamma_BxT)[..., None]
        * jnp.exp(topk_logp - jax.lax.stop_gradient(topk_logp)), axis=-1)
    ratio = gamma_BxT + (hp.alpha * w * positive) * (topk_term - gamma_BxT)
    boosted = negative & (w > 0) & stats.is_rank1
    if hp.lam_on == "advantage":
      adv = jnp.where(boosted, hp.lam * adv, adv)
    else:
      ratio = jnp.where(boosted, hp.lam * ratio, ratio)
    metrics["gate_fraction"] = masked_mean(w, mask_BxT)
    metrics["boosted_fraction"] = masked_mean(boosted, mask_BxT)
  elif hp.method == "psr":
    adv = jnp.where(positive, adv, 0.0)
  elif hp.method == "nsr":
    adv = jnp.where(negative, adv, 0.0)
  elif hp.method == "w_reinforce":
    adv = jnp.where(positive, hp.psr_weight * adv, adv)
  return ratio, adv, metrics
