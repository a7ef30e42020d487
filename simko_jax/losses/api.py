"""Public loss entry points: from logits, or fused from final hidden states + the LM-head matrix.

    loss, metrics = simko_loss(logits=logits_BxTxV, targets=tokens_BxT, old_logprobs=old_BxT,
                               advantages=adv_B, mask=mask_BxT)          # authors' defaults
    loss, metrics = grpo_loss(logits=..., targets=..., old_logprobs=..., advantages=..., mask=...)

All are pure functions (jit / grad / vmap safe, sharding agnostic). Keyword hyper-parameters are
forwarded to `policy_loss_from_stats`; defaults are the authors' released settings: top_k 3,
alpha 0.01, lam 1.1 on the advantage, tau 0.8 as a per-response quantile, clip 0.2/0.2, token-mean.
"""

from __future__ import annotations

import jax

from simko_jax.losses.chunked import token_stats_from_hidden
from simko_jax.losses.policy import policy_loss_from_stats
from simko_jax.losses.token_stats import token_stats_from_logits

NUM_RANK_PROBS = 5  # rank-1..5 candidate probabilities are always reported


def _num_candidates(method: str, top_k: int) -> int:
  return max(top_k, NUM_RANK_PROBS) if method == "simko" else NUM_RANK_PROBS


def _needs_entropy_grad(entropy_coef) -> bool:
  return not (isinstance(entropy_coef, (int, float)) and entropy_coef == 0)


def policy_loss(*, logits: jax.Array, targets: jax.Array, old_logprobs: jax.Array,
                advantages: jax.Array, mask: jax.Array, method: str = "simko",
                temperature: float = 1.0, top_k: int = 3, **hparams):
  """Any method in `policy.METHODS` from logits [B, T, V]; returns (loss, metrics)."""
  stats = token_stats_from_logits(
      logits, targets, num_candidates=_num_candidates(method, top_k), temperature=temperature,
      entropy_grad=_needs_entropy_grad(hparams.get("entropy_coef", 0.0)))
  return policy_loss_from_stats(stats, old_logprobs=old_logprobs, advantages=advantages, mask=mask,
                                method=method, top_k=top_k, **hparams)


def fused_policy_loss(*, hidden: jax.Array, unembedding: jax.Array, targets: jax.Array,
                      old_logprobs: jax.Array, advantages: jax.Array, mask: jax.Array,
                      method: str = "simko", temperature: float = 1.0, top_k: int = 3,
                      chunk_size: int = 1024, **hparams):
  """As `policy_loss`, from hidden [B, T, D] and unembedding [D, V], computing logits in chunks.

  Never holds more than [chunk_size, V] logits at once, forward or backward (`losses.chunked`).
  """
  stats = token_stats_from_hidden(
      hidden, unembedding, targets, num_candidates=_num_candidates(method, top_k),
      temperature=temperature, chunk_size=chunk_size,
      entropy_grad=_needs_entropy_grad(hparams.get("entropy_coef", 0.0)))
  return policy_loss_from_stats(stats, old_logprobs=old_logprobs, advantages=advantages, mask=mask,
                                method=method, top_k=top_k, **hparams)


def simko_loss(*, logits, targets, old_logprobs, advantages, mask, top_k: int = 3,
               alpha: float = 0.01, lam: float = 1.1, tau: float = 0.8, gate: str = "quantile",
               lam_on: str = "advantage", **common):
  """SimKO loss (SIMKO_METHOD.md) from logits [B, T, V]; returns (loss, metrics)."""
  return policy_loss(logits=logits, targets=targets, old_logprobs=old_logprobs,
                     advantages=advantages, mask=mask, method="simko", top_k=top_k, alpha=alpha,
                     lam=lam, tau=tau, gate=gate, lam_on=lam_on, **common)


def grpo_loss(*, logits, targets, old_logprobs, advantages, mask, **common):
  """GRPO / PPO clipped-surrogate loss (clip-higher via clip_low/clip_high); returns (loss, metrics)."""
  return policy_loss(logits=logits, targets=targets, old_logprobs=old_logprobs,
                     advantages=advantages, mask=mask, method="grpo", **common)
