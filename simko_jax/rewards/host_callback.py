"""Host verifiers inside a compiled program: `HostRewards` calls `VerifierPool.score` through
`jax.pure_callback`, so a jitted step can score responses whose verifier only exists in Python
(math-verify). The device waits for the pool; nothing else changes: the same decode as the rollout
(`tokenizer.decode(row[mask > 0], skip_special_tokens=True)`), the same pool, its per-answer timeouts
(a timed-out answer scores 0.0 and is counted in the returned `timeouts`, and in `pool.total_stats`).

    host = HostRewards(pool, tokenizer)
    truth = host.prepare(ground_truths, data_sources)     # host: {"truth_id": int32 [P]}
    out = jax.jit(step)(...)  # inside: host(tokens_BxR, mask_BxR, repeat_rows(truth, G))
    out["rewards"]  float32 [B];  out["timeouts"], out["truncated"]  int32 []

Strings cannot enter a jitted function, so `prepare` keeps them on the host under integer ids (the last
`capacity` ids are remembered) and the program carries the ids. The callback is pure (same ids and tokens,
same rewards), so JAX may run it once per call or, where a result is unused, not at all. Under `jit` with
rows sharded over several devices, JAX hands the callback the whole batch on one host device and shards the
result back (tested on 8 fake CPU devices; not yet with several JAX processes).
"""

from __future__ import annotations

import collections
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from simko_jax.rewards.registry import get_reward_fn


class HostRewards:
  """Rewards of `pool` (a `VerifierPool`) for token rows, callable inside `jax.jit`."""

  on_device = False

  def __init__(self, pool, tokenizer, capacity: int = 1 << 20):
    self.pool = pool
    self.tokenizer = tokenizer
    self.capacity = min(capacity, 2 ** 30)
    self._truths: collections.OrderedDict[int, tuple[str, str]] = collections.OrderedDict()
    self._next_id = 0

  def prepare(self, ground_truths: Sequence[str], data_sources: Sequence[str]) -> dict:
    """Host: remember (ground truth, data source) pairs; returns {"truth_id": int32 [P]} for the program."""
    if len(ground_truths) != len(data_sources):
      raise ValueError(f"{len(ground_truths)} ground truths but {len(data_sources)} data sources")
    for source in set(map(str, data_sources)) if self.pool is not None else ():  # unknown source: KeyError now,
      get_reward_fn(source, default=self.pool.default_source,  # not inside the compiled program
                    math_extraction=self.pool.math_extraction)
    ids = (self._next_id + np.arange(len(ground_truths))) % 2 ** 31
    self._next_id = (self._next_id + len(ground_truths)) % 2 ** 31
    for i, truth, source in zip(ids, ground_truths, data_sources):
      self._truths.pop(int(i), None)
      self._truths[int(i)] = (str(truth), str(source))
    while len(self._truths) > self.capacity:
      self._truths.popitem(last=False)
    return {"truth_id": ids.astype(np.int32)}

  def _lookup(self, truth_id: int) -> tuple[str, str]:
    if truth_id not in self._truths:
      raise KeyError(f"truth id {truth_id} was never prepared or is older than the last {self.capacity}; call "
                     "prepare() for the prompts of this batch")
    return self._truths[truth_id]

  def score(self, tokens_BxR, mask_BxR, truth_id_B):
    """Host side (numpy in, numpy out): decode, look up, `pool.score`; (rewards, timeouts, truncated)."""
    tokens_BxR, mask_BxR = np.asarray(tokens_BxR), np.asarray(mask_BxR)
    texts = [self.tokenizer.decode(row[mask > 0], skip_special_tokens=True)
             for row, mask in zip(tokens_BxR, mask_BxR)]
    batch = [(text, *self._lookup(int(i))) for text, i in zip(texts, np.asarray(truth_id_B))]
    rewards = self.pool.score(batch) if batch else []
    stats = self.pool.last_batch_stats
    return (np.asarray(rewards, np.float32).reshape(len(batch)), np.int32(stats.num_timeouts),
            np.int32(stats.num_truncated))

  def __call__(self, tokens_BxR, mask_BxR, truth: dict) -> dict:
    """Inside or outside jit: {"rewards": float32 [B], "timeouts": int32 [], "truncated": int32 []}."""
    rows = tokens_BxR.shape[0]
    shapes = (jax.ShapeDtypeStruct((rows,), jnp.float32), jax.ShapeDtypeStruct((), jnp.int32),
              jax.ShapeDtypeStruct((), jnp.int32))
    rewards, timeouts, truncated = jax.pure_callback(self.score, shapes, tokens_BxR, mask_BxR, truth["truth_id"],
                                                     vmap_method="sequential")
    return {"rewards": rewards, "timeouts": timeouts, "truncated": truncated}
