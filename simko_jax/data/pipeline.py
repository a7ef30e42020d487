"""grain pipeline: Examples -> chat-templated prompt tokens -> shuffled, repeated, sharded, padded batches.

Stages (all deterministic given the config):
  1. tokenise eagerly with `data.prompts.prompt_ids(config.prompt_format, tokenizer, prompt)` (system
     message, instruction suffix and chat template: the function every evaluation path uses too).
     Prompts longer than `max_prompt_len` are dropped (`overlong="drop"`,
     counted in `PromptPipeline.num_dropped`) or raise DataError (`overlong="error"`). Done once over the
     whole dataset, identically on every host, so all hosts keep the same examples.
  2. `grain.MapDataset.source(kept).shuffle(seed)` then `.repeat(num_epochs)`: each epoch is a fresh
     permutation (grain seeds epoch e with seed + e); the stream is the concatenation of the epochs and a
     batch may straddle an epoch boundary (its "epochs" entry tells which epoch each prompt came from).
  3. finite streams are cut to a multiple of `shard_count * num_prompts` (the tail of the last epoch is
     dropped) so every host yields the same number of full batches; host `shard_index` takes stream
     positions shard_index, shard_index + shard_count, ...; global batch b is then stream positions
     [b * P * shard_count, (b + 1) * P * shard_count) split across hosts (P = num_prompts).
  4. `.batch(num_prompts, drop_remainder=True)` with a collate fn giving
       prompt_tokens  int32 [P, Tp]  left-padded with `pad_id`
       prompt_mask    int32 [P, Tp]  1 on real tokens
       prompt_lengths int32 [P]
       ground_truths, data_sources: list[str]; example_ids: list[int] (position in the input list);
       epochs: list[int]
     where Tp = min(max_prompt_len, ceil(longest prompt in the batch / bucket_size) * bucket_size).
Iterator state (`get_state()` / `set_state()`) is grain's next-index plus a fingerprint of the data and
config; restoring gives exactly the batch that followed the saved one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Protocol, Sequence

import grain
import numpy as np

from simko_jax.data.prompts import PromptFormat, prompt_ids
from simko_jax.data.sources import DataError, Example


class ChatTokenizer(Protocol):
  def encode(self, text: str) -> list[int]: ...
  def apply_chat_template(self, messages: list[dict[str, str]],
                          add_generation_prompt: bool = True) -> str: ...


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Invariants: num_prompts >= 1; 1 <= bucket_size; 0 <= shard_index < shard_count; num_epochs None
  (infinite) or >= 1; overlong in {"drop", "error"}."""
  num_prompts: int
  max_prompt_len: int
  bucket_size: int = 64
  pad_id: int = 0
  seed: int = 0
  num_epochs: int | None = 1
  shard_index: int = 0
  shard_count: int = 1
  overlong: str = "drop"
  prompt_format: PromptFormat = PromptFormat()

  def __post_init__(self):
    if self.num_prompts < 1 or self.max_prompt_len < 1 or self.bucket_size < 1:
      raise ValueError("num_prompts, max_prompt_len and bucket_size must be >= 1")
    if not 0 <= self.shard_index < self.shard_count:
      raise ValueError(f"need 0 <= shard_index < shard_count, got {self.shard_index}/{self.shard_count}")
    if self.num_epochs is not None and self.num_epochs < 1:
      raise ValueError(f"num_epochs must be None or >= 1, got {self.num_epochs}")
    if self.overlong not in ("drop", "error"):
      raise ValueError(f"overlong must be 'drop' or 'error', got {self.overlong!r}")
    if not 0 <= self.seed < 2**32:
      raise ValueError("seed must be in [0, 2**32)")


@dataclasses.dataclass(frozen=True)
class _Record:
  example_id: int
  tokens: tuple[int, ...]
  ground_truth: str
  data_source: str


def tokenize_prompt(tokenizer: ChatTokenizer, prompt: str, fmt: PromptFormat = PromptFormat()) -> list[int]:
  """Prompt ids of `prompt` under `fmt` (default: one user turn in the chat template, nothing added)."""
  return prompt_ids(fmt, tokenizer, prompt)


def _tokenize_all(examples: Sequence[Example], tokenizer: ChatTokenizer,
                  config: PipelineConfig) -> tuple[list[_Record], int]:
  records, dropped = [], 0
  for example_id, example in enumerate(examples):
    tokens = tokenize_prompt(tokenizer, example.prompt, config.prompt_format)
    where = lambda: (f"{example.path or 'source ' + example.data_source}: row {example.index}: "  # noqa: E731
                     f"field 'prompt': example {example_id}")
    if not tokens:
      raise DataError(f"{where()} tokenised to nothing")
    if len(tokens) > config.max_prompt_len:
      if config.overlong == "error":
        raise DataError(f"{where()} has {len(tokens)} tokens > max_prompt_len="
                        f"{config.max_prompt_len}; raise config.data.max_prompt_len or set "
                        "config.data.overlong_prompts='drop' to skip (and count) such prompts")
      dropped += 1
      continue
    records.append(_Record(example_id, tuple(tokens), example.ground_truth, example.data_source))
  return records, dropped


def collate(items: Sequence[tuple[int, _Record]], config: PipelineConfig) -> dict[str, Any]:
  """Left-pad a list of (epoch, record) into the batch dict described in the module docstring."""
  longest = max(len(r.tokens) for _, r in items)
  width = min(config.max_prompt_len, math.ceil(longest / config.bucket_size) * config.bucket_size)
  tokens_PxTp = np.full((len(items), width), config.pad_id, dtype=np.int32)
  mask_PxTp = np.zeros((len(items), width), dtype=np.int32)
  for row, (_, record) in enumerate(items):
    n = len(record.tokens)
    tokens_PxTp[row, width - n:] = record.tokens
    mask_PxTp[row, width - n:] = 1
  return {
      "prompt_tokens": tokens_PxTp,
      "prompt_mask": mask_PxTp,
      "prompt_lengths": mask_PxTp.sum(axis=1, dtype=np.int32),
      "ground_truths": [r.ground_truth for _, r in items],
      "data_sources": [r.data_source for _, r in items],
      "example_ids": [r.example_id for _, r in items],
      "epochs": [epoch for epoch, _ in items],
  }


class _Collate:
  """Picklable batch_fn bound to a config."""

  def __init__(self, config: PipelineConfig):
    self.config = config

  def __call__(self, items):
    return collate(items, self.config)


class _TagEpoch:
  """map_with_index fn: stream position -> (epoch, record)."""

  def __init__(self, epoch_len: int):
    self.epoch_len = epoch_len

  def __call__(self, index: int, record: _Record) -> tuple[int, _Record]:
    return index // self.epoch_len, record


class PromptBatchIterator:
  """Iterator over batch dicts with checkpointable state. Raises StopIteration after the last batch."""

  def __init__(self, dataset: "grain.MapDataset", fingerprint: str):
    self._dataset = dataset
    self._fingerprint = fingerprint
    # Synchronous reads: batches are cheap numpy collations and the state stays a plain next-index.
    read_options = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    self._iterator = dataset.to_iter_dataset(read_options).__iter__()

  def __iter__(self) -> "PromptBatchIterator":
    return self

  def __next__(self) -> dict[str, Any]:
    return next(self._iterator)

  def get_state(self) -> dict[str, Any]:
    """JSON-serialisable state: {"grain": grain iterator state, "fingerprint": data+config hash}."""
    return {"grain": dict(self._iterator.get_state()), "fingerprint": self._fingerprint}

  def set_state(self, state: dict[str, Any]) -> None:
    """Resume so that the next batch is the one that followed `state`'s save point."""
    if state.get("fingerprint") != self._fingerprint:
      raise ValueError("iterator state was saved for different data or pipeline config")
    self._iterator.set_state(state["grain"])


class PromptPipeline:
  """Tokenised, shuffled, repeated, sharded prompt batches (see module docstring).

  Attributes:
    num_examples: examples kept after the overlong filter.
    num_dropped: examples dropped for exceeding max_prompt_len.
    dataset: the grain MapDataset of batch dicts (random access by batch index).
  """

  def __init__(self, examples: Sequence[Example], tokenizer: ChatTokenizer, config: PipelineConfig):
    self.config = config
    records, self.num_dropped = _tokenize_all(examples, tokenizer, config)
    self.num_examples = len(records)
    if not records:
      raise DataError(f"no examples left after dropping {self.num_dropped} prompts longer than "
                      f"max_prompt_len={config.max_prompt_len}; raise config.data.max_prompt_len")
    stream = grain.MapDataset.source(records).shuffle(seed=config.seed).repeat(config.num_epochs)
    stream = stream.map_with_index(_TagEpoch(len(records)))
    if config.num_epochs is not None:
      global_batch = config.shard_count * config.num_prompts
      usable = len(stream) // global_batch * global_batch
      if usable == 0:
        raise DataError(f"{len(records)} examples x {config.num_epochs} epochs is less than one global "
                        f"batch ({config.shard_count} shards x {config.num_prompts} prompts)")
      stream = stream[:usable]
    stream = stream[config.shard_index::config.shard_count]
    self.dataset = stream.batch(config.num_prompts, drop_remainder=True, batch_fn=_Collate(config))
    # The prompt format is covered by the hashed tokens; leaving it out of the config part keeps the
    # fingerprints of runs saved before the field existed.
    fields = dataclasses.astuple(dataclasses.replace(config, prompt_format=PromptFormat()))[:-1]
    digest = hashlib.sha256(repr(fields).encode())
    for record in records:
      digest.update(repr((record.example_id, record.tokens, record.ground_truth)).encode())
    self.fingerprint = digest.hexdigest()[:16]

  def __len__(self) -> int:
    """Batches per host (sys.maxsize-ish for infinite repetition)."""
    return len(self.dataset)

  def iterator(self) -> PromptBatchIterator:
    """A fresh iterator positioned at the first batch."""
    return PromptBatchIterator(self.dataset, self.fingerprint)

  def __iter__(self) -> PromptBatchIterator:
    return self.iterator()
