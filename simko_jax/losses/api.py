"""Public loss entry points: from logits, or fused from final hidden states + the LM-head matrix.

    loss, metrics = simko_loss(logits=logits_BxTxV, targets=tokens_BxT, old_logprobs=old_BxT,
                               advantages=adv_B, mask=mask_BxT)          # authors' defaults
    loss, metrics = grpo_loss(logits=..., targets=..., old_logprobs=..., advantages=..., mask=...)

All are pure functions (jit / grad / vmap safe, sharding agnostic). Hyper-parameters are the fields of
`simko_jax.hparams.LossHParams`, passed by name (`alpha=0.05`) or whole (`hparams=LossHParams(...)`);
its defaults are the authors' released settings: top_k 3, alpha 0.01, lam 1.1 on the advantage, tau 0.8
as a per-response quantile, clip 0.2/0.2, token-mean. `normalizer` and `ref_logprobs` are forwarded to
`policy_loss_from_stats`.
"""

from __future__ import annotations

import jax

from simko_jax.hparams import LossHParams, resolve
from simko_jax.losses.chunked import token_stats_from_hidden
from simko_jax.losses.policy import policy_loss_from_stats
from simko_jax.losses.token_stats import token_stats_from_logits


def _needs_entropy_grad(entropy_coef) -> bool:
  return not (isinstance(entropy_coef, (int, float)) and entropy_coef == 0)


def policy_loss(*, logits: jax.Array, targets: jax.Array, old_logprobs: jax.Array | None,
                advantages: jax.Array, mask: jax.Array, hparams: LossHParams | None = None,
                normalizer=None, ref_logprobs=None, **overrides):
  """Any method in `hparams.METHODS` from logits [B, T, V]; returns (loss, metrics)."""
  hp = resolve(LossHParams, hparams, **overrides)
  stats = token_stats_from_logits(
      logits, targets, num_candidates=hp.num_candidates, temperature=hp.temperature,
      entropy_grad=_needs_entropy_grad(hp.entropy_coef))
  return policy_loss_from_stats(stats, old_logprobs=old_logprobs, advantages=advantages, mask=mask,
                                normalizer=normalizer, ref_logprobs=ref_logprobs, hparams=hp)


def fused_policy_loss(*, hidden: jax.Array, unembedding: jax.Array, targets: jax.Array,
                      old_logprobs: jax.Array | None, advantages: jax.Array, mask: jax.Array,
                      hparams: LossHParams | None = None, normalizer=None, ref_logprobs=None,
                      **overrides):
  """As `policy_loss`, from hidden [B, T, D] and unembedding [D, V], computing logits in chunks.

  Never holds more than [chunk_size, V] logits at once, forward or backward (`losses.chunked`).
  """
  hp = resolve(LossHParams, hparams, **overrides)
  stats = token_stats_from_hidden(
      hidden, unembedding, targets, num_candidates=hp.num_candidates, temperature=hp.temperature,
      chunk_size=hp.chunk_size, entropy_grad=_needs_entropy_grad(hp.entropy_coef))
  return policy_loss_from_stats(stats, old_logprobs=old_logprobs, advantages=advantages, mask=mask,
                                normalizer=normalizer, ref_logprobs=ref_logprobs, hparams=hp)


def simko_loss(*, logits, targets, old_logprobs, advantages, mask, **hparams):
  """SimKO loss (SIMKO_METHOD.md) from logits [B, T, V]; returns (loss, metrics)."""
  return policy_loss(logits=logits, targets=targets, old_logprobs=old_logprobs,
                     advantages=advantages, mask=mask, method="simko", **hparams)


def grpo_loss(*, logits, targets, old_logprobs, advantages, mask, **hparams):
  """GRPO / PPO clipped-surrogate loss (clip-higher via clip_low/clip_high); returns (loss, metrics)."""
  return policy_loss(logits=logits, targets=targets, old_logprobs=old_logprobs,
                     advantages=advantages, mask=mask, method="grpo", **hparams)
