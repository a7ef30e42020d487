"""One RL iteration's rollouts: sample G responses per prompt on device, score them on the host, pick groups.

`sample_and_score` runs one sampler call and returns its output *as it is on the device* (global arrays,
every host's rows) plus this host's `Scored` rows on the host. Only what the verifier needs crosses to
the host, once: this host's response token ids, response lengths and finish reasons (ids -> text ->
reward). The rest of the iteration (`train.batch`: masks, positions, advantages, old/ref log-probs,
mini-batches) reads the device arrays; the rewards go back to the device once, in `train.loop`.

Options users expect from verl/DAPO:
  * dynamic sampling (`select_groups`): groups whose G rewards are all equal carry no GRPO signal; they
    are dropped and further prompt batches are sampled (at most `max_refill_rounds` more) until the
    step is full. If it still is not, dropped groups fill the remaining slots (their advantages are 0,
    so they add nothing to the gradient) and `metrics["groups_padded"]` counts them;
  * overlong masking (`train.batch.assemble_batch`): responses cut by the length limit leave the loss;
  * old log-probs from the trainer's own forward (never the sampler's), reference log-probs only when
    the KL coefficient is non-zero (`train.batch.fill_logprobs`).
Shapes: B rows (= P prompts x G responses, this host's), R response tokens (docs/shapes.md).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np

from simko_jax.sampling.sampler import FINISH_LENGTH, SampleOutput, Sampler
from simko_jax.train.distributed import global_rows_to_host


@dataclasses.dataclass
class Scored:
  """This host's sampled rows, on the host: what the verifier returned and what the metrics need.
  Rows g*G .. g*G+G-1 are the G responses of prompt g."""
  rewards: np.ndarray           # [B] float32
  truncated: np.ndarray         # [B] bool, cut by the length limit
  response_lengths: np.ndarray  # [B] int32
  prompt_lengths: np.ndarray    # [B] int32, real (unpadded) prompt tokens
  example_ids: list[int]        # [P]

  def take_groups(self, group_ids, group_size: int) -> "Scored":
    rows = group_rows(group_ids, group_size)
    return Scored(self.rewards[rows], self.truncated[rows], self.response_lengths[rows],
                  self.prompt_lengths[rows], [self.example_ids[int(g)] for g in group_ids])

  @staticmethod
  def concat(parts: list["Scored"]) -> "Scored":
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])
    return Scored(cat("rewards"), cat("truncated"), cat("response_lengths"), cat("prompt_lengths"),
                  [i for p in parts for i in p.example_ids])


def group_rows(group_ids, group_size: int) -> np.ndarray:
  """Rows of groups `group_ids` (in that order), int64 [len(group_ids) * group_size]."""
  ids = np.asarray(group_ids, np.int64).reshape(-1, 1)
  return (ids * group_size + np.arange(group_size)).reshape(-1)


def sample_and_score(sampler: Sampler, params, prompt_batch: dict, key, rollout_cfg, tokenizer,
                     score_fn: Callable[[list[tuple[str, str, str]]], list[float]],
                     truncated_is_wrong: bool = False) -> tuple[SampleOutput, Scored, float, float]:
  """Samples `group_size` responses for every prompt of `prompt_batch` and scores this host's rows.

  Returns (the sampler's output on device, this host's `Scored` rows, sampling seconds, scoring
  seconds). Sampling time runs until the output is ready and the verifier's inputs are on the host.
  With `truncated_is_wrong`, a response cut by the length limit scores 0 whatever its text.
  """
  g = rollout_cfg.group_size
  start = time.perf_counter()
  out = sampler.sample(params, prompt_batch["prompt_tokens"], prompt_batch["prompt_mask"], key,
                       n=g, max_new_tokens=rollout_cfg.max_new_tokens,
                       temperature=rollout_cfg.temperature, top_p=rollout_cfg.top_p,
                       top_k=rollout_cfg.top_k, keep_global=True)
  response_BxR, lengths_B, finish_B = global_rows_to_host(
      (out.response_tokens, out.response_lengths, out.finish_reason))
  sample_s = time.perf_counter() - start

  start = time.perf_counter()
  # Responses are a prefix of the buffer (response_mask is 1 for the first `length` tokens).
  texts = [tokenizer.decode(row[:length], skip_special_tokens=True)
           for row, length in zip(response_BxR, lengths_B)]
  truths = np.repeat(np.asarray(prompt_batch["ground_truths"], dtype=object), g)
  sources = np.repeat(np.asarray(prompt_batch["data_sources"], dtype=object), g)
  rewards = np.asarray(score_fn(list(zip(texts, truths, sources))), np.float32)
  truncated = np.asarray(finish_B) == FINISH_LENGTH
  if truncated_is_wrong:
    rewards = np.where(truncated, 0.0, rewards).astype(np.float32)
  prompt_lengths = np.repeat(np.asarray(prompt_batch["prompt_mask"]).sum(-1), g).astype(np.int32)
  scored = Scored(rewards=rewards, truncated=truncated,
                  response_lengths=np.asarray(lengths_B, np.int32), prompt_lengths=prompt_lengths,
                  example_ids=list(prompt_batch["example_ids"]))
  return out, scored, sample_s, time.perf_counter() - start


def split_prompts(prompt_batch: dict, chunk: int) -> list[dict]:
  """Row chunks of a prompt batch (arrays and lists alike), so a step's prompts can be sampled in
  several sampler calls of one compiled shape; `chunk` 0 or >= rows keeps the batch whole."""
  rows = len(prompt_batch["example_ids"])
  if not chunk or chunk >= rows:
    return [prompt_batch]
  return [{k: v[lo:lo + chunk] for k, v in prompt_batch.items()} for lo in range(0, rows, chunk)]


def select_groups(scored: Scored, num_groups: int, group_size: int,
                  dynamic_sampling: bool) -> tuple[np.ndarray, int]:
  """The first `num_groups` groups of `scored` (informative ones first under dynamic sampling, then
  uninformative ones as padding). Returns (group ids int64 [num_groups], number of padding groups)."""
  if not dynamic_sampling:
    return np.arange(num_groups), 0
  rewards_PxG = scored.rewards.reshape(-1, group_size)
  informative = rewards_PxG.max(-1) > rewards_PxG.min(-1)
  order = np.concatenate([np.flatnonzero(informative), np.flatnonzero(~informative)])
  padded = max(0, num_groups - int(informative.sum()))
  return order[:num_groups], padded


def rollout_metrics(scored: Scored, padded: int, group_size: int) -> dict[str, Any]:
  """Metrics of this host's chosen rows (host arrays: no transfer)."""
  rewards_PxG = scored.rewards.reshape(-1, group_size)
  return {
      "reward_mean": float(rewards_PxG.mean()),
      "accuracy": float((rewards_PxG > 0.5).mean()),
      "pass_at_group": float((rewards_PxG.max(-1) > 0.5).mean()),
      "response_length": float(scored.response_lengths.mean()),
      "truncated_fraction": float(scored.truncated.mean()),
      "groups_all_equal": float((rewards_PxG.max(-1) == rewards_PxG.min(-1)).mean()),
      "groups_padded": padded,
  }
