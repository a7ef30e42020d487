"""pass@k of S policies (a seed-stacked pytree) on fixed problems with the library sampler.

`SeedEvaluator(sampler, tokenizer, examples, eval_cfg, prompt_len).correct_counts(params_S)` returns
`counts_SxP` (int): how many of `eval_cfg.num_samples` samples of each problem each policy answered
correctly. Protocol (the paper's, as in studies 1-3): temperature `eval_cfg.temperature`, top-p
`eval_cfg.top_p`, at most `eval_cfg.max_new_tokens` tokens, a response cut by that limit is wrong,
the library's countdown verifier scores the rest. Prompts are the training prompts' format
(`data.prompts.prompt_ids`, default `PromptFormat`).

Randomness: problem chunk c (of `chunk_problems` problems) draws with key fold_in(key(eval.seed), c)
for every policy, so policies are compared on common random numbers, and a policy's counts do not
depend on which other policies are evaluated with it.
Per-problem pass@k comes from the library's unbiased estimator (`simko_jax.metrics.pass_at_k`).
"""

from __future__ import annotations

import jax
import numpy as np

from experiments.vmapped import unstack
from simko_jax.data.prompts import PromptFormat, prompt_ids
from simko_jax.metrics.pass_at_k import pass_at_k
from simko_jax.rewards.registry import get_reward_fn
from simko_jax.sampling.sampler import FINISH_STOP


def pass_at_k_per_problem(counts_SxP: np.ndarray, n: int, k: int) -> np.ndarray:
  """[S, P] float64 unbiased pass@k of every (policy, problem) from correct counts out of n."""
  counts = np.asarray(counts_SxP)
  return pass_at_k(np.full(counts.size, n), counts.reshape(-1), k).reshape(counts.shape)


class SeedEvaluator:

  def __init__(self, sampler, tokenizer, examples, eval_cfg, prompt_len: int, chunk_problems: int = 32):
    self.sampler = sampler
    self.tokenizer, self.examples, self.e = tokenizer, list(examples), eval_cfg
    self.chunk = int(chunk_problems)
    rows = [prompt_ids(PromptFormat(), tokenizer, ex.prompt) for ex in self.examples]
    if max(len(r) for r in rows) > prompt_len:
      raise ValueError(f"an evaluation prompt is longer than {prompt_len} tokens")
    self.tokens_PxTp = np.full((len(rows), prompt_len), tokenizer.pad_id, np.int32)
    self.mask_PxTp = np.zeros((len(rows), prompt_len), np.int32)
    for i, r in enumerate(rows):
      self.tokens_PxTp[i, prompt_len - len(r):] = r
      self.mask_PxTp[i, prompt_len - len(r):] = 1
    self._scores: dict = {}

  def _score(self, text: str, ex) -> float:
    key = (text, ex.index)
    if key not in self._scores:
      self._scores[key] = float(get_reward_fn(ex.data_source)(text, ex.ground_truth))
    return self._scores[key]

  def correct_counts(self, params_S, num_policies: int) -> np.ndarray:
    """[S, P] correct counts. Policies run one after another through the library `Sampler` (one
    compiled program): a batch of `chunk_problems` x num_samples rows already fills the CPU, and a
    vmapped while-loop would copy every seed's KV cache at each step."""
    e, n = self.e, int(self.e.num_samples)
    counts = np.zeros((num_policies, len(self.examples)), np.int64)
    for s in range(num_policies):
      params = unstack(params_S, s)
      for c, lo in enumerate(range(0, len(self.examples), self.chunk)):
        hi = min(lo + self.chunk, len(self.examples))
        out = jax.device_get(self.sampler.sample(
            params, self.tokens_PxTp[lo:hi], self.mask_PxTp[lo:hi],
            jax.random.fold_in(jax.random.key(e.seed), c), n=n, max_new_tokens=e.max_new_tokens,
            temperature=e.temperature, top_p=e.top_p))
        tokens, mask = np.asarray(out.response_tokens), np.asarray(out.response_mask)
        for row in np.flatnonzero(np.asarray(out.finish_reason) == FINISH_STOP):  # cut: wrong
          ex = self.examples[lo + row // n]
          text = self.tokenizer.decode(tokens[row][mask[row] > 0], skip_special_tokens=True)
          counts[s, lo + row // n] += self._score(text, ex) > 0.5
    return counts
