"""Concentration analysis of a checkpoint (SimKO §7): how much next-token probability sits on the rank-1
candidate versus ranks 2..5, teacher-forced on the model's own samples.

  1. sample `num_samples` responses for each of the first `num_prompts` problems of a fixed prompt set;
  2. full forward over prompt + response; logits at positions Tp-1 .. Tp+R-2 predict the R response tokens;
  3. `token_stats_from_logits` (temperature = the sampling temperature, C = 5 candidates) on response
     positions, then `concentration_metrics` (Lambda(1..3), Lambda_sample, rank1..5_prob).
Metrics are combined over forward batches with the weights that make them equal to one call on all rows:
Lambda values are means over responses (weight: responses with >= 1 token), rank probabilities are
means over tokens (weight: valid tokens).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from simko_jax.data.sources import Example
from simko_jax.hparams import NUM_RANK_PROBS
from simko_jax.losses.token_stats import token_stats_from_logits
from simko_jax.metrics.concentration import concentration_metrics

NUM_LAMBDA = 3
NUM_RANKS = NUM_RANK_PROBS  # the trainer's rank-1..5 probabilities


def _stats_fn(graphdef, temperature: float):
  @jax.jit
  def stats(state, tokens_BxT, attn_BxT, response_mask_BxR):
    """int32 [B, T] rows (prompt then R response tokens), [B, T] and [B, R] {0,1} masks -> metrics."""
    model = nnx.merge(graphdef, state)
    r = response_mask_BxR.shape[1]
    logits_BxRxV = model(tokens_BxT, attention_mask_BxT=attn_BxT)[:, -r - 1:-1]
    ts = token_stats_from_logits(logits_BxRxV, tokens_BxT[:, -r:], num_candidates=NUM_RANKS,
                                 temperature=temperature)
    metrics = concentration_metrics(ts.topk_logp, ts.logp, response_mask_BxR, num_lambda=NUM_LAMBDA,
                                    num_rank_probs=NUM_RANKS)
    metrics["num_responses"] = jnp.sum(jnp.sum(response_mask_BxR, -1) > 0).astype(jnp.float32)
    metrics["num_tokens"] = jnp.sum(response_mask_BxR).astype(jnp.float32)
    return metrics
  return stats


def sample_prompts(model, tokenizer, prompts: Sequence[str], cc, *, seed: int = 0, chat: bool = True,
                   system_prompt: str = "", max_prompt_len: int = 1024, prompt_suffix: str = "",
                   prompt_template: str = "chat") -> list:
  """Sample `cc.num_samples` responses per prompt, `per_call = max(1, forward_rows // n)` prompts per
  call. Every call has exactly per_call prompts (the last chunk repeats its last prompt) and prompts
  left-padded to a multiple of 32 tokens, so one sampler program and one forward program serve all calls.
  Prompts are built by `data.prompts.prompt_ids` (the training/eval prompt function) from the problems.
  Returns [(SampleOutput, num_real_rows)]: rows >= num_real_rows are padding copies."""
  from simko_jax.data.prompts import PromptFormat
  from simko_jax.sampling import Sampler, round_up
  from simko_jax.sampling.text import encode_prompts

  from simko_jax.eval.generation import _stop_ids
  graphdef, state = nnx.split(model)
  pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
  sampler = Sampler(graphdef, pad_id=pad_id, stop_ids=_stop_ids(tokenizer, model.cfg))
  n = int(cc.num_samples)
  fmt = PromptFormat(system_prompt or "", prompt_suffix, prompt_template if chat else "plain")
  per_call = max(1, int(cc.forward_rows) // n)
  outputs = []
  for start in range(0, len(prompts), per_call):
    chunk = list(prompts[start:start + per_call])
    real = len(chunk)
    chunk += [chunk[-1]] * (per_call - real)
    tokens_PxTp, mask_PxTp = encode_prompts(tokenizer, chunk, pad_id=pad_id, max_prompt_len=max_prompt_len,
                                          fmt=fmt)
    padded_len = round_up(tokens_PxTp.shape[1], 32)
    left = ((0, 0), (padded_len - tokens_PxTp.shape[1], 0))
    tokens_PxTp = np.pad(tokens_PxTp, left, constant_values=pad_id)
    mask_PxTp = np.pad(mask_PxTp, left)
    out = sampler.sample(state, tokens_PxTp, mask_PxTp, jax.random.key(seed + start), n=n,
                         max_new_tokens=cc.max_new_tokens, temperature=float(cc.temperature))
    outputs.append((out, real * n))
  return outputs


def teacher_forced_concentration(model, outputs, temperature: float) -> dict:
  """Combined `concentration_metrics` over [(SampleOutput, num_real_rows)] (see module docstring).
  Returns the metric floats plus "num_responses" and "num_tokens" (real rows only)."""
  graphdef, state = nnx.split(model)
  stats = _stats_fn(graphdef, float(temperature))
  sums: dict[str, float] = {}
  weights = {"responses": 0.0, "tokens": 0.0}
  for out, real_rows in outputs:
    response_mask_BxR = np.asarray(out.response_mask).copy()
    response_mask_BxR[real_rows:] = 0  # padding copies: no valid token, so they weigh nothing
    attn = np.concatenate([np.asarray(out.prompt_mask), response_mask_BxR], axis=-1)
    m = {k: float(v) for k, v in stats(state, out.tokens, attn, response_mask_BxR).items()}
    for key, value in m.items():
      if key.startswith("lambda"):
        sums[key] = sums.get(key, 0.0) + value * m["num_responses"]
      elif key.startswith("rank"):
        sums[key] = sums.get(key, 0.0) + value * m["num_tokens"]
    weights["responses"] += m["num_responses"]
    weights["tokens"] += m["num_tokens"]
  result = {key: total / max(weights["responses"] if key.startswith("lambda") else weights["tokens"], 1.0)
            for key, total in sums.items()}
  result.update(num_responses=int(weights["responses"]), num_tokens=int(weights["tokens"]))
  return result


def concentration_analysis(model, tokenizer, examples: Sequence[Example], cc, *, seed: int = 0,
                           chat: bool = True, system_prompt: str = "", prompt_suffix: str = "",
                           max_prompt_len: int = 1024, prompt_template: str = "chat") -> dict:
  """Concentration metrics of `model` on its own samples for the first `cc.num_prompts` examples.

  Args:
    model: a `Transformer`. tokenizer: `simko_jax.models.Tokenizer`.
    cc: the `concentration` sub-config (num_prompts, num_samples, max_new_tokens, temperature,
      forward_rows = rows per sampler call / teacher-forced forward).
  Returns: {"lambda_1".."lambda_3", "lambda_sample", "rank1_prob".."rank5_prob": float,
    "num_prompts", "num_samples", "num_responses", "num_tokens", "mean_response_tokens", "temperature"}.
  """
  prompts = [ex.prompt for ex in list(examples)[:cc.num_prompts]]
  outputs = sample_prompts(model, tokenizer, prompts, cc, seed=seed, chat=chat, system_prompt=system_prompt,
                           max_prompt_len=max_prompt_len, prompt_suffix=prompt_suffix,
                           prompt_template=prompt_template)
  result = teacher_forced_concentration(model, outputs, cc.temperature)
  n = int(cc.num_samples)
  result.update(num_prompts=len(prompts), num_samples=n, temperature=float(cc.temperature),
                mean_response_tokens=result["num_tokens"] / max(len(prompts) * n, 1))
  return dict(sorted(result.items()))
