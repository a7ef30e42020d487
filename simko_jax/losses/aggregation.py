"""Loss aggregation over response tokens, with exact global normalisation across micro-batches.

A batch split into micro-batches must give the same loss and gradient as the whole batch. Each mode is
a sum over the micro-batch divided by a *global* denominator, so summing the micro-batch results
reproduces the full-batch value. When `normalizer` is None the micro-batch's own denominator is used
(correct when there is a single micro-batch).

Modes:
  token_mean            sum_{i,t} l m / sum_{i,t} m                       (default; DAPO/verl "token-mean")
  micro_batch_token_mean  sum_b (n_b / N) * [sum_{i in b,t} l m / sum_{i in b,t} m]
                        verl's actor (the SimKO authors' code): a token mean inside each micro-batch b,
                        weighted by its share n_b / N of the mini-batch's responses. Not a global token
                        mean: a token's weight depends on how many tokens share its micro-batch, so the
                        result depends on the micro-batching; with one micro-batch it equals token_mean.
                        Here `normalizer` is N (responses in the mini-batch) and n_b counts the
                        micro-batch's responses with at least one loss token.
  seq_mean_token_mean   sum_i [sum_t l m / sum_t m] / #responses          (GRPO paper)
  seq_mean_token_sum    sum_i  sum_t l m / #responses                     (Dr. GRPO; divide by a constant
                                                                            budget through `normalizer`)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.hparams import AGGREGATION_MODES

_RESPONSE_COUNT_MODES = ("micro_batch_token_mean", "seq_mean_token_mean", "seq_mean_token_sum")


def aggregation_denominator(mask: jax.Array, mode: str) -> jax.Array:
  """The denominator `aggregate` would use for this mask: token count or number of responses.

  Args:
    mask: [B, T] {0,1} valid response tokens.
    mode: one of AGGREGATION_MODES.
  Returns: float32 scalar. Sum it over all micro-batches to get the global `normalizer`.
  """
  mask = mask.astype(jnp.float32)
  if mode == "token_mean":
    return jnp.sum(mask)
  if mode in _RESPONSE_COUNT_MODES:
    return jnp.sum((jnp.sum(mask, axis=-1) > 0).astype(jnp.float32))
  raise ValueError(f"loss aggregation mode {mode!r} is not one of {AGGREGATION_MODES}")


def aggregate(values: jax.Array, mask: jax.Array, mode: str = "token_mean",
              normalizer: jax.Array | float | None = None) -> jax.Array:
  """Reduces per-token `values` [B, T] to a scalar with `mask` [B, T] under `mode`.

  Args:
    values: [B, T] float per-token losses.
    mask: [B, T] {0,1}; padding and prompt tokens are 0.
    mode: one of AGGREGATION_MODES.
    normalizer: global denominator (see module doc); None uses this batch's own.
  Returns: float32 scalar. An all-zero mask gives 0, never NaN.
  """
  mask = mask.astype(jnp.float32)
  values = values.astype(jnp.float32) * mask
  if normalizer is None:
    normalizer = aggregation_denominator(mask, mode)
  denom = jnp.maximum(jnp.asarray(normalizer, jnp.float32), 1e-8)
  if mode == "token_mean":
    total = jnp.sum(values)
  elif mode == "micro_batch_token_mean":
    responses = aggregation_denominator(mask, mode)
    total = jnp.sum(values) / jnp.maximum(jnp.sum(mask), 1.0) * responses
  elif mode == "seq_mean_token_mean":
    total = jnp.sum(jnp.sum(values, -1) / jnp.maximum(jnp.sum(mask, -1), 1.0))
  elif mode == "seq_mean_token_sum":
    total = jnp.sum(values)
  else:
    raise ValueError(f"loss aggregation mode {mode!r} is not one of {AGGREGATION_MODES}")
  return total / denom


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of `values` over positions where `mask` is 1 (0 when the mask is empty). Any shape."""
  mask = mask.astype(jnp.float32)
  return jnp.sum(values.astype(jnp.float32) * mask) / jnp.maximum(jnp.sum(mask), 1.0)
