"""Concentration metrics of the next-token distribution (SimKO paper, SIMKO_METHOD.md §7). Pure JAX.

  Lambda(n)      = mean over responses i of [ mean over valid tokens l of log p(v(n) | s_{i,l}) ]
  Lambda_sample  = the same with the sampled token instead of the rank-n candidate
  rank_prob(n)   = mean over all valid tokens of p(v(n) | s)   (the paper's rank-1..5 bar figure)

Under GRPO Lambda(1) -> 0 while Lambda(2), Lambda(3) fall (probability piles onto the rank-1 candidate);
SimKO keeps them up. Responses with no valid token are ignored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _per_response_mean(values_BxT: jax.Array, mask_BxT: jax.Array) -> tuple[jax.Array, jax.Array]:
  mask = mask_BxT.astype(jnp.float32)
  count_B = jnp.sum(mask, axis=-1)
  mean_B = jnp.sum(values_BxT * mask, axis=-1) / jnp.maximum(count_B, 1.0)
  return mean_B, (count_B > 0).astype(jnp.float32)


def concentration_metrics(topk_logp_BxTxC: jax.Array, logp_BxT: jax.Array, mask_BxT: jax.Array,
                          *, num_lambda: int, num_rank_probs: int = 5) -> dict[str, jax.Array]:
  """Lambda(1..num_lambda), Lambda_sample and rank_prob(1..num_rank_probs) as float32 scalars.

  Args:
    topk_logp_BxTxC: float [B, T, C] log-probs of the rank-1..C candidates (both counts are clipped to C).
    logp_BxT: float [B, T] log-prob of the sampled token.
    mask_BxT: [B, T] {0,1} valid response tokens (B responses, T their tokens).
  Returns: dict with keys `lambda_1..`, `lambda_sample`, `rank1_prob..`. Gradients are stopped.
  """
  topk = jax.lax.stop_gradient(topk_logp_BxTxC.astype(jnp.float32))
  logp = jax.lax.stop_gradient(logp_BxT.astype(jnp.float32))
  num_cands = topk.shape[-1]
  out = {}
  for n in range(min(num_lambda, num_cands)):
    mean_B, valid_B = _per_response_mean(topk[..., n], mask_BxT)
    out[f"lambda_{n + 1}"] = jnp.sum(mean_B * valid_B) / jnp.maximum(jnp.sum(valid_B), 1.0)
  mean_B, valid_B = _per_response_mean(logp, mask_BxT)
  out["lambda_sample"] = jnp.sum(mean_B * valid_B) / jnp.maximum(jnp.sum(valid_B), 1.0)
  mask = mask_BxT.astype(jnp.float32)
  num_tokens = jnp.maximum(jnp.sum(mask), 1.0)
  for n in range(min(num_rank_probs, num_cands)):
    out[f"rank{n + 1}_prob"] = jnp.sum(jnp.exp(topk[..., n]) * mask) / num_tokens
  return out
