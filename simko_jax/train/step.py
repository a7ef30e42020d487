"""The one jitted, sharded `train_step`, and the trainer's own log-prob forward.

`train_step(params, opt_state, batch) -> (params, opt_state, metrics)`:
  * `batch` holds one optimizer step's responses split into M micro-batches (leaves [M, B / M, ...]);
    gradients are accumulated over them with `jax.lax.scan`, so memory is one micro-batch's;
  * the loss is the fused chunked LM head + policy loss (`losses.fused_policy_loss`), normalised by the
    *whole* mini-batch's token (or response) count, so accumulation is exact; under
    `aggregation="micro_batch_token_mean"` (verl's) the normaliser is the mini-batch's response count
    and each micro-batch contributes its own token mean times its share of those responses;
  * gradients are clipped by global norm, optax (AdamW + schedule) updates the params;
  * a non-finite loss or gradient norm skips the update: params and optimizer state come back unchanged
    and `metrics["update_skipped"] == 1`;
  * params and optimizer state are donated; in/out shardings are explicit.

Sequences are `[prompt (left-padded to Tp) | response (R tokens)]`, length T = Tp + R. Hidden states at
positions Tp-1 .. T-2 predict the response tokens, so only R positions per sequence reach the LM head.
Loss hyper-parameters are a `simko_jax.hparams.LossHParams` (`LossHParams.from_config(cfg)`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from simko_jax.hparams import SCHEDULES, LossHParams, is_on_policy
from simko_jax.losses import aggregation_denominator, policy_loss_from_stats, token_stats_from_hidden

__all__ = ["Batch", "LossHParams", "batch_sharding", "is_on_policy", "jit_logprobs", "jit_train_step",
           "make_optimizer", "response_token_stats", "shard_batch", "train_step_fn"]


def __getattr__(name):
  # `LossConfig` was this module's copy of the loss hyper-parameters; kept one release.
  if name == "LossConfig":
    warnings.warn("simko_jax.train.step.LossConfig is deprecated: use simko_jax.hparams.LossHParams "
                  "(same fields; LossHParams.from_config(cfg))", DeprecationWarning, stacklevel=2)
    return LossHParams
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Batch(NamedTuple):
  """Responses for one optimizer step. Leading dims `...` are [M, mb] in `train_step` (M micro-
  batches of mb rows), [B] elsewhere (`train.batch` builds it on device, rows sharded over the mesh).

  tokens:         [..., T] int32, prompt (left-padded to Tp) followed by the response (R tokens).
  attention_mask: [..., T] int32, 1 for real prompt and response tokens.
  positions:      [..., T] int32, cumsum(attention_mask) - 1 clipped at 0.
  loss_mask:      [..., R] float32, 1 for response tokens that enter the loss.
  old_logprobs:   [..., R] float32, behaviour-policy log-probs (the trainer's own forward).
  ref_logprobs:   [..., R] float32, reference-policy log-probs (zeros when the KL coefficient is 0).
  advantages:     [...] float32, one per response.
  """
  tokens: jax.Array
  attention_mask: jax.Array
  positions: jax.Array
  loss_mask: jax.Array
  old_logprobs: jax.Array
  ref_logprobs: jax.Array
  advantages: jax.Array


def make_optimizer(optim_cfg, total_updates: int) -> tuple[optax.GradientTransformation, Any]:
  """AdamW with global-norm clipping and a constant / cosine / linear schedule (with warm-up).

  optim_cfg: an `OptimizerHParams` or the `config.optim` section (the same fields).
  """
  if optim_cfg.schedule not in SCHEDULES:
    raise ValueError(f"optimizer schedule {optim_cfg.schedule!r} is not one of {SCHEDULES}")
  lr, warmup = optim_cfg.learning_rate, optim_cfg.warmup_steps
  decay_steps = max(total_updates - warmup, 1)
  if optim_cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif optim_cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps)
  else:
    main = optax.linear_schedule(lr, 0.0, decay_steps)
  schedule = (optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
              if warmup else main)
  chain = [optax.clip_by_global_norm(optim_cfg.grad_clip)] if optim_cfg.grad_clip > 0 else []
  chain.append(optax.adamw(schedule, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
                           weight_decay=optim_cfg.weight_decay))
  return optax.chain(*chain), schedule


def response_token_stats(graphdef, params, tokens, attention_mask, positions, response_len: int,
                         loss_cfg: LossHParams):
  """Current-policy `TokenStats` [B, R] of the response tokens (fused chunked LM head)."""
  model = nnx.merge(graphdef, params)
  h_BxTxD = model.hidden_states(tokens, positions, attention_mask)
  prompt_len = tokens.shape[-1] - response_len
  h_BxRxD = h_BxTxD[:, prompt_len - 1:-1]
  return token_stats_from_hidden(
      h_BxRxD, model.unembedding(), tokens[:, prompt_len:],
      num_candidates=loss_cfg.num_candidates, temperature=loss_cfg.temperature,
      chunk_size=loss_cfg.chunk_size, entropy_grad=loss_cfg.entropy_coef != 0,
      logit_softcap=model.cfg.final_logit_softcapping)


def response_logprobs(graphdef, params, tokens, attention_mask, positions, response_len: int,
                      loss_cfg: LossHParams) -> jax.Array:
  """Log-probs float32 [B, R] of the response tokens (old / reference policy; no entropy gradient)."""
  return response_token_stats(graphdef, params, tokens, attention_mask, positions, response_len,
                              dataclasses.replace(loss_cfg, entropy_coef=0.0)).logp


def _micro_loss(params, graphdef, mb: Batch, normalizer, loss_cfg: LossHParams):
  response_len = mb.loss_mask.shape[-1]
  stats = response_token_stats(graphdef, params, mb.tokens, mb.attention_mask, mb.positions,
                               response_len, loss_cfg)
  return policy_loss_from_stats(
      stats, old_logprobs=mb.old_logprobs, advantages=mb.advantages, mask=mb.loss_mask,
      normalizer=normalizer, ref_logprobs=mb.ref_logprobs if loss_cfg.kl_coef else None,
      hparams=loss_cfg)


def train_step_fn(graphdef, tx: optax.GradientTransformation, loss_cfg: LossHParams):
  """The un-jitted step: (params, opt_state, batch [M, B / M, ...]) -> (params, opt_state, metrics)."""

  def step(params, opt_state, batch: Batch):
    mask_BxR = batch.loss_mask.reshape(-1, batch.loss_mask.shape[-1])
    # Global over all M micro-batches: tokens (token_mean) or responses (every other mode).
    normalizer = aggregation_denominator(mask_BxR, loss_cfg.aggregation)
    grad_fn = jax.value_and_grad(_micro_loss, has_aux=True)

    def accumulate(grads, mb):
      (loss, metrics), g = grad_fn(params, graphdef, mb, normalizer, loss_cfg)
      grads = jax.tree.map(jnp.add, grads, g)
      counts = (jnp.sum(mb.loss_mask), jnp.sum(jnp.any(mb.loss_mask > 0, axis=-1)))
      return grads, (loss, metrics, counts)

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, (losses, micro_metrics, (tokens, responses)) = jax.lax.scan(accumulate, zeros, batch)
    loss = jnp.sum(losses)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    # Globally normalised terms add up over micro-batches; per-token means are token-weighted and
    # per-response means (Lambda) response-weighted, so metrics do not depend on the micro-batching.
    def combine(name, values):
      if name in ("pg_loss", "kl_loss"):
        return jnp.sum(values)
      weights = responses if name.startswith("lambda_") else tokens
      return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)

    metrics = {k: combine(k, v) for k, v in micro_metrics.items()}
    metrics.update(loss=loss, grad_norm=grad_norm, update_skipped=1.0 - finite.astype(jnp.float32),
                   num_loss_tokens=jnp.sum(tokens))
    return keep(new_params, params), keep(new_opt_state, opt_state), metrics

  return step


def batch_sharding(mesh, leading_dims: int = 2) -> NamedSharding:
  """Micro-batched leaves [M, mb, ...] split mb over ("data", "fsdp"); [B, ...] when leading_dims=1."""
  return NamedSharding(mesh, P(*([None] * (leading_dims - 1)), ("data", "fsdp")))


def shard_batch(batch: Batch, mesh, leading_dims: int = 2) -> Batch:
  """Places host arrays (numpy) on `mesh` with `batch_sharding` (per-host data in multi-process runs is
  assembled by the caller with `jax.make_array_from_process_local_data`)."""
  return jax.device_put(batch, batch_sharding(mesh, leading_dims))


def jit_train_step(graphdef, tx, loss_cfg: LossHParams, param_shardings, opt_shardings, mesh):
  """`train_step_fn` under `jax.jit` with explicit shardings and donated params / optimizer state."""
  data = batch_sharding(mesh, 2)
  batch_shardings = Batch(*([data] * len(Batch._fields)))
  replicated = NamedSharding(mesh, P())
  return jax.jit(train_step_fn(graphdef, tx, loss_cfg),
                 in_shardings=(param_shardings, opt_shardings, batch_shardings),
                 out_shardings=(param_shardings, opt_shardings, replicated),
                 donate_argnums=(0, 1))


def jit_logprobs(graphdef, loss_cfg: LossHParams, param_shardings, mesh):
  """Jitted `(params, tokens [B, T], attention_mask [B, T], positions [B, T], response_len) -> logp
  float32 [B, R]` (old/ref log-probs; inputs and output rows sharded over ("data", "fsdp"))."""

  def logprobs(params, tokens, attention_mask, positions, response_len):
    return response_logprobs(graphdef, params, tokens, attention_mask, positions, response_len, loss_cfg)

  data = batch_sharding(mesh, 1)
  return jax.jit(logprobs, in_shardings=(param_shardings, data, data, data), static_argnums=4,
                 out_shardings=data)
