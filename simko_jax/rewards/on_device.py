"""Rewards for a compiled RL step: the on-device verifier of a data source if it has one, else the host pool
through a callback. Both have one interface, so the step does not care which it got:

    reward = batch_reward_for("countdown", tokenizer, pool=pool)   # DeviceReward or HostRewards
    truth = reward.prepare(ground_truths, data_sources)            # host, when the prompts are drawn: [P] arrays
    out = reward(tokens_BxR, response_mask_BxR, repeat_rows(truth, G))   # pure, jittable, rows shardable
    out["rewards"] float32 [B]; out["timeouts"], out["truncated"] int32 []
    reward.on_device   # which path: say it in the log

The on-device verifier is chosen exactly when the host registry (`registry.get_reward_fn`) would pick the
Python function it reproduces: `arith_reward` -> "boxed", `final_number_reward` -> "plain",
`countdown_reward` -> countdown, and the tokenizer is byte-level BPE or the character tokenizer.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from simko_jax.rewards.arith_device import arith_rewards, arith_truth
from simko_jax.rewards.countdown_check import countdown_reward
from simko_jax.rewards.countdown_device import countdown_rewards, countdown_truth
from simko_jax.rewards.host_callback import HostRewards
from simko_jax.rewards.registry import arith_reward, final_number_reward, get_reward_fn
from simko_jax.rewards.token_text import UnsupportedTokenizer, response_chars, token_table

DEFAULT_MAX_CHARS = 20_000  # = VerifierPool's default max_response_chars
_DEVICE_KINDS = {arith_reward: "boxed", final_number_reward: "plain", countdown_reward: "countdown"}


def repeat_rows(truth, group_size: int):
  """[P, ...] prepared truth -> [P * G, ...]: row r belongs to prompt r // G (docs/shapes.md)."""
  return jax.tree.map(lambda x: jnp.repeat(x, group_size, axis=0), truth)


class DeviceReward:
  """An on-device verifier ("boxed" / "plain" arith, or "countdown") over a tokenizer's token table.

  `max_chars`: code points of each response the verifier sees (the last ones), as `VerifierPool`'s
  `max_response_chars`; default min(R * longest token, 20,000): the pool's default cut, exactly.
  """

  on_device = True

  def __init__(self, kind: str, tokenizer, *, vocab_size: int | None = None, max_chars: int | None = None):
    if kind not in ("boxed", "plain", "countdown"):
      raise ValueError(f"on-device reward kind must be boxed|plain|countdown, got {kind!r}")
    self.kind = kind
    self.table = jax.tree.map(jnp.asarray, token_table(tokenizer, vocab_size))
    self.max_chars = max_chars

  def prepare(self, ground_truths: Sequence[str], data_sources: Sequence[str] | None = None):
    """Host: ground-truth strings -> arrays [P, ...] (ValueError naming a bad one)."""
    del data_sources
    return countdown_truth(ground_truths) if self.kind == "countdown" else arith_truth(ground_truths)

  def __call__(self, tokens_BxR, mask_BxR, truth) -> dict:
    responses = tokens_BxR.shape[1]
    max_chars = self.max_chars or min(responses * self.table.max_token_bytes, DEFAULT_MAX_CHARS)
    chars_BxX, length_B, truncated_B = response_chars(self.table, tokens_BxR, mask_BxR, max_chars)
    if self.kind == "countdown":
      rewards_B = countdown_rewards(chars_BxX, length_B, truth)
    else:
      rewards_B = arith_rewards(chars_BxX, length_B, truth, self.kind)
    return {"rewards": rewards_B, "timeouts": jnp.int32(0), "truncated": jnp.sum(truncated_B, dtype=jnp.int32)}


def batch_reward_for(data_source: str, tokenizer, *, pool=None, vocab_size: int | None = None,
                     max_chars: int | None = None, math_extraction: str = "boxed"):
  """`DeviceReward` for `data_source` where one exists, else `HostRewards(pool, tokenizer)`.
  ValueError if only the host path applies and no `pool` is given."""
  kind = _DEVICE_KINDS.get(get_reward_fn(data_source, math_extraction=math_extraction))
  if kind is not None:
    try:
      return DeviceReward(kind, tokenizer, vocab_size=vocab_size, max_chars=max_chars)
    except UnsupportedTokenizer:
      if pool is None:
        raise
  if pool is None:
    raise ValueError(f"data source {data_source!r} has no on-device verifier: pass pool=VerifierPool(...) to score "
                     "it on the host through a callback")
  return HostRewards(pool, tokenizer)


def task_data_source(task: str, answer_format: str = "boxed") -> str:
  """config.data.task (+ answer_format) -> the data source its examples carry (train/tasks.py)."""
  if task == "arith":
    return "arith_plain" if answer_format == "plain" else "arith"
  if task == "countdown":
    return "countdown"
  raise ValueError(f"task {task!r} draws its data sources from its files; pass each example's data_source")
