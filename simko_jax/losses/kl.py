"""Per-token KL estimators between the current policy and a reference policy (Schulman's k1/k2/k3).

All take log-probs of the *sampled* tokens, [B, T] float32, and return [B, T].
  k1 = log pi - log pi_ref                      unbiased, high variance, can be negative
  k2 = 0.5 (log pi - log pi_ref)^2              biased, low variance (its gradient is the k1 gradient)
  k3 = exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1   unbiased, >= 0 ("low_var_kl" in verl)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.hparams import KL_ESTIMATORS, LossHParams



def kl_penalty(logp: jax.Array, ref_logp: jax.Array, estimator: str = LossHParams.kl_estimator) -> jax.Array:
  """Per-token KL estimate; log-ratio clipped to [-20, 20] (as verl does) so exp cannot overflow."""
  log_ratio = jnp.clip(logp.astype(jnp.float32) - ref_logp.astype(jnp.float32), -20.0, 20.0)
  if estimator == "k1":
    return log_ratio
  if estimator == "k2":
    return 0.5 * jnp.square(log_ratio)
  if estimator == "k3":
    return jnp.exp(-log_ratio) + log_ratio - 1.0
  raise ValueError(f"kl estimator {estimator!r} is not one of {KL_ESTIMATORS}")
