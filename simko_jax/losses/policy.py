"""Policy-gradient losses for RLVR: GRPO, SimKO, PSR, NSR and W-REINFORCE, from token statistics.

Everything follows `SIMKO_METHOD.md`. Per valid response token (i, l):

  gamma = exp(logp - old_logp)                          importance ratio (log-ratio clipped to +-20)
  w     = 1[H > thr_i]                                  forking-token gate, H stop-gradient (`forking_gate`)
  A > 0 (SimKO):  r = gamma + alpha w (mean_k sg(gamma) exp(logp[v(k)] - sg(logp[v(k)])) - gamma)
                  value == gamma exactly (clipping decisions are GRPO's); gradient
                  (1 - alpha w) gamma grad logp_y + (alpha w / K) gamma sum_k grad logp[v(k)]
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

from simko_jax.losses.advantages import broadcast_advantages
from simko_jax.losses.aggregation import aggregate, masked_mean
from simko_jax.losses.kl import kl_penalty
from simko_jax.losses.token_stats import TokenStats
from simko_jax.metrics.concentration import concentration_metrics

METHODS = ("grpo", "simko", "psr", "nsr", "w_reinforce")
GATE_MODES = ("quantile", "absolute")
LAM_MODES = ("advantage", "ratio")


def forking_gate(entropy_BxT: jax.Array, mask_BxT: jax.Array, tau: float,
                 mode: str = "quantile") -> jax.Array:
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
    old_logprobs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    method: str = "simko",
    top_k: int = 3,
    alpha: float = 0.01,
    lam: float = 1.1,
    tau: float = 0.8,
    gate: str = "quantile",
    lam_on: str = "advantage",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_ratio_c: float | None = None,
    psr_weight: float = 0.1,
    aggregation: str = "token_mean",
    normalizer: jax.Array | float | None = None,
    ref_logprobs: jax.Array | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    entropy_coef: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The policy loss and its metrics from precomputed `TokenStats` ([B, T] fields, [B, T, M] top-k).

  Args:
    stats: current-policy statistics; `stats.topk_logp` must hold at least `top_k` candidates.
    old_logprobs: [B, T] log-probs of the sampled tokens under the behaviour policy.
    advantages: [B] per response or [B, T] per token.
    mask: [B, T] {0,1} valid response tokens.
    method: one of METHODS. Hyper-parameters as in the module doc; see `simko_jax.config` for ranges.
    normalizer: global aggregation denominator for micro-batching (see `losses.aggregation`).
    ref_logprobs: [B, T] reference-policy log-probs; used only when kl_coef != 0.
    entropy_coef: entropy bonus; needs `stats.entropy` built with `entropy_grad=True` to have effect.
  Returns:
    (loss scalar float32, metrics dict of float32 scalars).
  """
  if method not in METHODS:
    raise ValueError(f"policy loss method {method!r} is not one of {METHODS}")
  if lam_on not in LAM_MODES:
    raise ValueError(f"lam_on {lam_on!r} is not one of {LAM_MODES}")
  mask = mask.astype(jnp.float32)
  logp = stats.logp.astype(jnp.float32)
  log_ratio = jnp.clip(logp - old_logprobs.astype(jnp.float32), -20.0, 20.0)
  gamma = jnp.exp(log_ratio)
  adv = broadcast_advantages(advantages, mask)
  positive = adv > 0
  negative = adv < 0
  ratio = gamma
  metrics = {}

  if method == "simko":
    w = forking_gate(stats.entropy, mask, tau, gate)
    topk_logp = stats.topk_logp[..., :top_k].astype(jnp.float32)
    # Value sg(gamma) * exp(0) == gamma; gradient gamma * grad logp[v(k)].
    topk_term = jnp.mean(
        jax.lax.stop_gradient(gamma)[..., None]
        * jnp.exp(topk_logp - jax.lax.stop_gradient(topk_logp)), axis=-1)
    ratio = gamma + (alpha * w * positive) * (topk_term - gamma)
    boosted = negative & (w > 0) & stats.is_rank1
    if lam_on == "advantage":
      adv = jnp.where(boosted, lam * adv, adv)
    else:
      ratio = jnp.where(boosted, lam * ratio, ratio)
    metrics["gate_fraction"] = masked_mean(w, mask)
    metrics["boosted_fraction"] = masked_mean(boosted, mask)
  elif method == "psr":
    adv = jnp.where(positive, adv, 0.0)
  elif method == "nsr":
    adv = jnp.where(negative, adv, 0.0)
  elif method == "w_reinforce":
    adv = jnp.where(positive, psr_weight * adv, adv)

  clipped_ratio = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
  pg_unclipped = -adv * ratio
  pg_clipped = -adv * clipped_ratio
  pg = jnp.maximum(pg_unclipped, pg_clipped)
  if clip_ratio_c is not None:
    pg = jnp.where(adv < 0, jnp.minimum(pg, -adv * clip_ratio_c), pg)
  loss = aggregate(pg, mask, aggregation, normalizer)
  metrics["pg_loss"] = loss

  if ref_logprobs is not None and kl_coef != 0.0:
    kl = kl_penalty(logp, ref_logprobs, kl_estimator)
    kl_loss = aggregate(kl, mask, aggregation, normalizer)
    loss = loss + kl_coef * kl_loss
    metrics["kl_loss"] = kl_loss
  if entropy_coef != 0.0:
    loss = loss - entropy_coef * aggregate(stats.entropy, mask, aggregation, normalizer)

  clip_active = (pg_clipped > pg_unclipped).astype(jnp.float32)
  metrics["clipfrac_high"] = masked_mean(clip_active * (ratio > 1.0), mask)
  metrics["clipfrac_low"] = masked_mean(clip_active * (ratio < 1.0), mask)
  metrics["ppo_kl"] = masked_mean(-jax.lax.stop_gradient(log_ratio), mask)
  metrics["entropy"] = masked_mean(jax.lax.stop_gradient(stats.entropy), mask)
  metrics["rank1_fraction"] = masked_mean(stats.is_rank1, mask)
  metrics.update(concentration_metrics(stats.topk_logp, logp, mask, num_lambda=max(top_k, 3)))
  return loss, jax.tree.map(lambda x: jax.lax.stop_gradient(jnp.asarray(x, jnp.float32)), metrics)
