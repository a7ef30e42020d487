"""Advantage estimators for groups of G responses per prompt (outcome rewards, one per response)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.hparams import UpdateHParams


def grpo_advantages(rewards_PxG: jax.Array, *, normalize_std: bool = True, eps: float = UpdateHParams.adv_eps,
                    ddof: int = 1) -> jax.Array:
  """GRPO group-normalised advantages `(r - mean_group) / (std_group + eps)`.

  Args:
    rewards_PxG: [P, G] float rewards, G responses for each of P prompts.
    normalize_std: divide by the group std (GRPO); False gives the Dr. GRPO form `r - mean`.
    eps: added to the std (verl uses 1e-6).
    ddof: std degrees of freedom; 1 (Bessel) matches verl's `torch.std`. For G == 1 the advantage is 0.
  Returns:
    [P, G] float32. A group whose rewards are all equal gets advantage 0 everywhere.
  """
  r = rewards_PxG.astype(jnp.float32)
  group = r.shape[-1]
  centred = r - jnp.mean(r, axis=-1, keepdims=True)
  if group == 1:
    return jnp.zeros_like(r)
  if not normalize_std:
    return centred
  std = jnp.std(r, axis=-1, keepdims=True, ddof=ddof if group > ddof else 0)
  return centred / (std + eps)


def signed_advantages(rewards_PxG: jax.Array, threshold: float = 0.5) -> jax.Array:
  """REINFORCE-style +1 / -1 advantages by reward sign (PSR/NSR/W-REINFORCE papers): [P, G] float32."""
  return jnp.where(rewards_PxG.astype(jnp.float32) > threshold, 1.0, -1.0)


def broadcast_advantages(advantages: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """[B] per-response or [B, T] per-token advantages -> [B, T] float32."""
  adv = advantages.astype(jnp.float32)
  if adv.ndim == 1:
    adv = adv[:, None]
  return jnp.broadcast_to(adv, mask_BxT.shape)
