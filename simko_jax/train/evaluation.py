"""pass@k of the policy on held-out task problems, before and after training (`eval_<tag>.json`).

Samples `eval.num_samples` responses for each of `eval.num_problems` held-out problems at the eval
temperature / top-p, scores them with the run's verifier pool, and reports the unbiased pass@k for
k = 1, 2, 4, ..., n, mean response length and the truncated fraction. The full benchmark harness
(resumable, MATH500/AIME/..., maj@k, plots) is `simko_jax.evaluate`.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from simko_jax.data.pipeline import tokenize_prompt
from simko_jax.metrics.pass_at_k import pass_at_k
from simko_jax.sampling.sampler import FINISH_LENGTH


def powers_of_two_up_to(n: int) -> list[int]:
  ks, k = [], 1
  while k <= n:
    ks.append(k)
    k *= 2
  return ks


def left_pad(token_lists: list[list[int]], pad_id: int, bucket: int) -> tuple[np.ndarray, np.ndarray]:
  """[B, P] left-padded tokens and mask, P rounded up to a multiple of `bucket`."""
  width = -(-max(len(t) for t in token_lists) // bucket) * bucket
  tokens = np.full((len(token_lists), width), pad_id, np.int32)
  mask = np.zeros((len(token_lists), width), np.int32)
  for i, ids in enumerate(token_lists):
    tokens[i, width - len(ids):] = ids
    mask[i, width - len(ids):] = 1
  return tokens, mask


def evaluate_run(run, tag: str, logger, batch_prompts: int | None = None) -> dict:
  """Evaluates `run.params` on `run.eval_examples`; writes `<out_dir>/eval_<tag>.json`."""
  cfg, examples = run.cfg, run.eval_examples
  if not examples:
    return {}
  start = time.perf_counter()
  n = cfg.eval.num_samples
  batch_prompts = batch_prompts or cfg.rollout.prompts_per_step
  correct, lengths, truncated = [], [], []
  for lo in range(0, len(examples), batch_prompts):
    chunk = examples[lo:lo + batch_prompts]
    chunk = chunk + [chunk[-1]] * (batch_prompts - len(chunk))  # one compiled shape
    tokens, mask = left_pad([tokenize_prompt(run.tokenizer, e.prompt) for e in chunk],
                            run.tokenizer.pad_id, cfg.data.prompt_bucket)
    key = jax.random.fold_in(jax.random.key(cfg.seed + 1), lo)
    out = jax.device_get(run.sampler.sample(
        run.params, tokens, mask, key, n=n, max_new_tokens=cfg.eval.max_new_tokens,
        temperature=max(cfg.eval.temperature, 1e-6), top_p=cfg.eval.top_p,
        greedy=cfg.eval.temperature == 0))
    texts = [run.tokenizer.decode(r[m > 0], skip_special_tokens=True)
             for r, m in zip(np.asarray(out.response_tokens), np.asarray(out.response_mask))]
    items = [(texts[i * n + j], e.ground_truth, e.data_source)
             for i, e in enumerate(chunk) for j in range(n)]
    rewards = np.asarray(run.pool.score(items)).reshape(len(chunk), n)
    cut = (np.asarray(out.finish_reason) == FINISH_LENGTH).reshape(len(chunk), n)
    if cfg.rewards.truncated_is_wrong:
      rewards = np.where(cut, 0.0, rewards)
    keep = min(batch_prompts, len(examples) - lo)
    correct.extend((rewards[:keep] > 0.5).sum(-1).tolist())
    lengths.extend(np.asarray(out.response_lengths).reshape(len(chunk), n)[:keep].ravel().tolist())
    truncated.extend(cut[:keep].ravel().tolist())
  c = np.asarray(correct)
  result = {"tag": tag, "step": run.step, "num_problems": len(examples), "num_samples": n,
            "pass_at_k": {str(k): float(np.mean(pass_at_k(np.full_like(c, n), c, k)))
                          for k in powers_of_two_up_to(n)},
            "mean_response_length": float(np.mean(lengths)),
            "truncated_fraction": float(np.mean(truncated)),
            "correct_per_problem": c.tolist(), "seconds": time.perf_counter() - start}
  if jax.process_index() == 0:
    with open(os.path.join(cfg.out_dir, f"eval_{tag}.json"), "w") as f:
      json.dump(result, f, indent=1)
  summary = ", ".join(f"pass@{k} {v:.3f}" for k, v in result["pass_at_k"].items())
  logger.event(f"eval {tag} (step {run.step}, {len(examples)} problems x {n}): {summary}")
  return result
