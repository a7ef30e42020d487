"""One RL iteration's data: sample G responses per prompt, score them, advantages, old log-probs.

`collect_rollout` returns the responses of `prompts_per_step` prompt groups as a host-side `Batch`
([N = prompts x G, ...] numpy arrays) plus per-iteration metrics. Options users expect from verl/DAPO:
  * dynamic sampling: groups whose G rewards are all equal carry no GRPO signal; they are dropped and
    further prompt batches are sampled (at most `max_refill_rounds` more) until the step is full. If it
    still is not, dropped groups fill the remaining slots (their advantages are 0, so they add nothing
    to the gradient) and `metrics["groups_padded"]` counts them;
  * overlong masking: responses cut by the length limit leave the loss (`loss_mask` row zeroed);
  * old log-probs from the trainer's own forward (never the sampler's), reference log-probs only when
    the KL coefficient is non-zero.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import numpy as np

from simko_jax.losses import grpo_advantages, signed_advantages
from simko_jax.sampling.sampler import FINISH_LENGTH, Sampler
from simko_jax.train.step import Batch


@dataclasses.dataclass
class Groups:
  """Sampled groups on the host. Rows g*G .. g*G+G-1 are the G responses of prompt g."""
  tokens: np.ndarray           # [N, P+R] int32
  attention_mask: np.ndarray   # [N, P+R] int32
  response_mask: np.ndarray    # [N, R] int32
  truncated: np.ndarray        # [N] bool
  rewards: np.ndarray          # [N] float32
  example_ids: list[int]       # [N // G]

  def take_groups(self, group_ids: list[int], group_size: int) -> "Groups":
    rows = np.concatenate([np.arange(g * group_size, (g + 1) * group_size) for g in group_ids])
    return Groups(self.tokens[rows], self.attention_mask[rows], self.response_mask[rows],
                  self.truncated[rows], self.rewards[rows], [self.example_ids[g] for g in group_ids])

  @staticmethod
  def concat(parts: list["Groups"]) -> "Groups":
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])
    return Groups(cat("tokens"), cat("attention_mask"), cat("response_mask"), cat("truncated"),
                  cat("rewards"), [i for p in parts for i in p.example_ids])


def sample_groups(sampler: Sampler, params, prompt_batch: dict, key, rollout_cfg, tokenizer,
                  score_fn: Callable[[list[tuple[str, str, str]]], list[float]],
                  timings: dict[str, float], truncated_is_wrong: bool = False) -> Groups:
  """Samples `group_size` responses for every prompt of `prompt_batch` and scores them.

  With `truncated_is_wrong`, a response cut by the length limit scores 0 whatever its text.
  """
  g = rollout_cfg.group_size
  start = time.perf_counter()
  out = sampler.sample(params, prompt_batch["prompt_tokens"], prompt_batch["prompt_mask"], key,
                       n=g, max_new_tokens=rollout_cfg.max_new_tokens,
                       temperature=rollout_cfg.temperature, top_p=rollout_cfg.top_p,
                       top_k=rollout_cfg.top_k)
  out = jax.device_get(out)
  timings["sample_s"] = timings.get("sample_s", 0.0) + time.perf_counter() - start
  timings["sampled_tokens"] = timings.get("sampled_tokens", 0) + int(out.response_mask.sum())

  start = time.perf_counter()
  response_mask = np.asarray(out.response_mask, np.int32)
  texts = [tokenizer.decode(row[mask > 0], skip_special_tokens=True)
           for row, mask in zip(np.asarray(out.response_tokens), response_mask)]
  truths = np.repeat(np.asarray(prompt_batch["ground_truths"], dtype=object), g)
  sources = np.repeat(np.asarray(prompt_batch["data_sources"], dtype=object), g)
  rewards = np.asarray(score_fn(list(zip(texts, truths, sources))), np.float32)
  truncated = np.asarray(out.finish_reason) == FINISH_LENGTH
  if truncated_is_wrong:
    rewards = np.where(truncated, 0.0, rewards).astype(np.float32)
  timings["reward_s"] = timings.get("reward_s", 0.0) + time.perf_counter() - start

  prompt_mask = np.asarray(out.prompt_mask, np.int32)
  return Groups(tokens=np.asarray(out.tokens, np.int32),
                attention_mask=np.concatenate([prompt_mask, response_mask], axis=-1),
                response_mask=response_mask,
                truncated=truncated,
                rewards=rewards, example_ids=list(prompt_batch["example_ids"]))


def split_prompts(prompt_batch: dict, chunk: int) -> list[dict]:
  """Row chunks of a prompt batch (arrays and lists alike), so a step's prompts can be sampled in
  several sampler calls of one compiled shape; `chunk` 0 or >= rows keeps the batch whole."""
  rows = len(prompt_batch["example_ids"])
  if not chunk or chunk >= rows:
    return [prompt_batch]
  return [{k: v[lo:lo + chunk] for k, v in prompt_batch.items()} for lo in range(0, rows, chunk)]


def select_groups(parts: list[Groups], num_groups: int, group_size: int,
                  dynamic_sampling: bool) -> tuple[Groups, int]:
  """First `num_groups` informative groups (all groups if not dynamic); pads with uninformative ones.

  Returns (groups, number of uninformative groups used as padding).
  """
  all_groups = Groups.concat(parts)
  total = len(all_groups.example_ids)
  if not dynamic_sampling:
    return all_groups.take_groups(list(range(num_groups)), group_size), 0
  rewards = all_groups.rewards.reshape(total, group_size)
  informative = rewards.max(-1) > rewards.min(-1)
  order = np.concatenate([np.flatnonzero(informative), np.flatnonzero(~informative)])
  padded = max(0, num_groups - int(informative.sum()))
  return all_groups.take_groups([int(i) for i in order[:num_groups]], group_size), padded


def advantages_for(rewards_PxG: np.ndarray, algo_cfg) -> np.ndarray:
  if algo_cfg.advantage == "signed":
    return np.asarray(signed_advantages(rewards_PxG))
  return np.asarray(grpo_advantages(rewards_PxG, normalize_std=algo_cfg.advantage == "grpo",
                                    eps=algo_cfg.adv_eps))


def positions_of(attention_mask: np.ndarray) -> np.ndarray:
  """Model positions cumsum(mask) - 1 clipped at 0, [N, L] int32."""
  return np.maximum(np.cumsum(attention_mask, axis=-1) - 1, 0).astype(np.int32)


def build_batch(groups: Groups, advantages_N: np.ndarray, overlong_mask: bool) -> Batch:
  """Host `Batch` with old/ref log-probs still zero (filled by `fill_logprobs`)."""
  loss_mask = groups.response_mask.astype(np.float32)
  if overlong_mask:
    loss_mask = loss_mask * (~groups.truncated)[:, None]
  n, r = loss_mask.shape
  zeros = np.zeros((n, r), np.float32)
  return Batch(tokens=groups.tokens, attention_mask=groups.attention_mask,
               positions=positions_of(groups.attention_mask), loss_mask=loss_mask,
               old_logprobs=zeros, ref_logprobs=zeros.copy(),
               advantages=np.asarray(advantages_N, np.float32))


def batched_logprobs(logprob_fn, params, batch: Batch, chunk: int, put: Callable) -> np.ndarray:
  """Runs the jitted log-prob forward over `batch` in row chunks of `chunk` (one compiled shape)."""
  n, r = batch.loss_mask.shape
  out = []
  for start in range(0, n, chunk):
    rows = slice(start, start + chunk)
    args = [put(np.asarray(x[rows])) for x in (batch.tokens, batch.attention_mask, batch.positions)]
    logp = logprob_fn(params, *args, r)
    if not logp.is_fully_addressable:  # multi-process: this host's rows only
      from simko_jax.train.distributed import global_rows_to_host
      logp = global_rows_to_host(logp)
    out.append(np.asarray(jax.device_get(logp)))
  return np.concatenate(out)[:n]


def rollout_metrics(groups: Groups, batch: Batch, padded: int, group_size: int) -> dict[str, Any]:
  rewards = groups.rewards.reshape(-1, group_size)
  lengths = groups.response_mask.sum(-1)
  return {
      "reward_mean": float(rewards.mean()),
      "accuracy": float((rewards > 0.5).mean()),
      "pass_at_group": float((rewards.max(-1) > 0.5).mean()),
      "response_length": float(lengths.mean()),
      "truncated_fraction": float(groups.truncated.mean()),
      "groups_all_equal": float((rewards.max(-1) == rewards.min(-1)).mean()),
      "groups_padded": padded,
      "advantage_abs_mean": float(np.abs(batch.advantages).mean()),
  }
