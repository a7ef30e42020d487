"""Supervised warm-up: cross-entropy on (prompt, gold response) pairs, response tokens only.

The mechanism study (`experiments/mechanism.py`) trains a small model from scratch with this before RL,
so that the RL methods start from a policy that already solves some problems in several ways.

Sequences are `[prompt | response | eos | pad...]` (right-padded to a fixed length L, so one compiled
step serves every batch). The prompt is chat-templated exactly as the RL pipeline does
(`data.pipeline.tokenize_prompt`), and positions are `cumsum(attention_mask) - 1`, so the sampler and the
RL trainer see the same token/position layout the model was trained on.

  batch = sft_batch(tokenizer, prompts, responses, seq_len=48)   # numpy dict, [B, L] leaves
  step = jit_sft_step(graphdef, tx)                               # (params, opt_state, batch) -> ...
  params, opt_state, loss = step(params, opt_state, batch)

Loss: sum over supervised target tokens of -log p(token) / number of supervised tokens. Prompt and
padding tokens never contribute (`target_mask` is 0 there), nor does the prediction made at the last
position.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from simko_jax.data.pipeline import tokenize_prompt
from simko_jax.data.prompts import PromptFormat


def sft_batch(tokenizer, prompts: Sequence[str], responses: Sequence[str], seq_len: int,
              fmt: PromptFormat = PromptFormat()) -> dict:
  """Right-padded training rows for `prompts[i]` (formatted by `fmt`, as RL training formats it; see
  `data.prompts`) followed by `responses[i]` and EOS.

  Returns numpy int32 arrays, all [B, seq_len]:
    tokens         prompt ids, response ids, eos, then pad_id
    attention_mask 1 on real tokens (prompt, response, eos)
    positions      cumsum(attention_mask) - 1 clipped at 0
    target_mask    1 on response and eos tokens (the tokens whose prediction is trained)
  Raises ValueError when a row does not fit in `seq_len`.
  """
  if len(prompts) != len(responses):
    raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
  b = len(prompts)
  tokens = np.full((b, seq_len), tokenizer.pad_id, np.int32)
  attention = np.zeros((b, seq_len), np.int32)
  target = np.zeros((b, seq_len), np.int32)
  for i, (prompt, response) in enumerate(zip(prompts, responses)):
    prompt_ids = tokenize_prompt(tokenizer, prompt, fmt)
    response_ids = [int(t) for t in tokenizer.encode(response)] + [int(tokenizer.eos_id)]
    n = len(prompt_ids) + len(response_ids)
    if n > seq_len:
      raise ValueError(f"row {i} has {n} tokens > seq_len={seq_len}: {prompt!r} -> {response!r}")
    tokens[i, :n] = prompt_ids + response_ids
    attention[i, :n] = 1
    target[i, len(prompt_ids):n] = 1
  positions = np.maximum(np.cumsum(attention, axis=-1) - 1, 0).astype(np.int32)
  return {"tokens": tokens, "attention_mask": attention, "positions": positions,
          "target_mask": target}


def sft_loss(graphdef, params, batch: dict) -> tuple[jax.Array, jax.Array]:
  """(mean cross-entropy over supervised target tokens, number of those tokens)."""
  model = nnx.merge(graphdef, params)
  logits_BxLxV = model(batch["tokens"], batch["positions"], batch["attention_mask"])
  logp_BxLxV = jax.nn.log_softmax(logits_BxLxV[:, :-1].astype(jnp.float32), axis=-1)
  targets_BxL = batch["tokens"][:, 1:]
  nll_BxL = -jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
  mask_BxL = batch["target_mask"][:, 1:].astype(jnp.float32)
  count = jnp.sum(mask_BxL)
  return jnp.sum(nll_BxL * mask_BxL) / jnp.maximum(count, 1.0), count


def make_sft_optimizer(learning_rate: float, total_steps: int, *, warmup_steps: int = 0,
                       weight_decay: float = 0.0, grad_clip: float = 1.0) -> optax.GradientTransformation:
  """AdamW with global-norm clipping and linear warm-up into a cosine decay to 10 % of the peak."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0 if warmup_steps else learning_rate, learning_rate, max(warmup_steps, 1),
      max(total_steps, warmup_steps + 1), end_value=0.1 * learning_rate)
  return optax.chain(optax.clip_by_global_norm(grad_clip),
                     optax.adamw(schedule, weight_decay=weight_decay))


def jit_sft_step(graphdef, tx: optax.GradientTransformation):
  """Jitted `(params, opt_state, batch) -> (params, opt_state, loss)`; params and state are donated."""

  def step(params, opt_state, batch):
    (loss, _), grads = jax.value_and_grad(sft_loss, argnums=1, has_aux=True)(graphdef, params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def train_sft(model, tokenizer, make_pairs, *, steps: int, batch_size: int, seq_len: int,
              learning_rate: float, warmup_steps: int = 0, weight_decay: float = 0.0,
              log_every: int = 0, log=print) -> tuple[object, list[float]]:
  """Trains `model` (an nnx `Transformer`) in place-free fashion; returns (params state, losses).

  make_pairs(step, batch_size) -> (prompts, responses): the step's training pairs (a pure function of
  the step, so the warm-up is reproducible).
  """
  graphdef, params = nnx.split(model)
  tx = make_sft_optimizer(learning_rate, steps, warmup_steps=warmup_steps, weight_decay=weight_decay)
  opt_state = tx.init(params)
  step_fn = jit_sft_step(graphdef, tx)
  losses = []
  for step in range(steps):
    prompts, responses = make_pairs(step, batch_size)
    batch = {k: jnp.asarray(v) for k, v in sft_batch(tokenizer, prompts, responses, seq_len).items()}
    params, opt_state, loss = step_fn(params, opt_state, batch)
    losses.append(float(loss))
    if log_every and (step + 1) % log_every == 0:
      log(f"[sft] step {step + 1}/{steps} loss {np.mean(losses[-log_every:]):.4f}")
  return params, losses
