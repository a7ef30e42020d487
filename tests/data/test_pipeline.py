"""grain prompt pipeline: padding/bucketing, overlong handling, shuffling/epochs, sharding, checkpointing."""
import json
import os

import numpy as np
import pytest

from simko_jax.data.arith_task import ArithConfig, arith_examples
from simko_jax.data.pipeline import PipelineConfig, PromptPipeline
from simko_jax.data.sources import DataError, Example, read_examples

DATA = "/work/shared/data"


class FakeTokenizer:
  """Byte-level ids + 3, a fixed chat template (1 = <user>, 2 = <assistant>)."""

  def apply_chat_template(self, messages, add_generation_prompt=True):
    assert add_generation_prompt and messages[-1]["role"] == "user"
    return "\x01" + messages[-1]["content"] + "\x02"

  def encode(self, text):
    return [b + 3 if b > 2 else b for b in text.encode()]


def _examples(lengths):
  return [Example(prompt="x" * n, ground_truth=str(i), data_source="arith", index=i)
          for i, n in enumerate(lengths)]


def _all_batches(pipeline):
  return list(pipeline.iterator())


def test_padding_bucketing_and_fields():
  examples = _examples([3, 10, 5, 1, 40])
  config = PipelineConfig(num_prompts=2, max_prompt_len=48, bucket_size=16, seed=1, overlong="drop")
  pipeline = PromptPipeline(examples, FakeTokenizer(), config)
  batches = _all_batches(pipeline)
  assert len(batches) == len(pipeline) == 2  # 5 examples, batch 2, remainder dropped
  for batch in batches:
    tokens, mask = batch["prompt_tokens"], batch["prompt_mask"]
    assert tokens.dtype == np.int32 and mask.dtype == np.int32 and tokens.shape == mask.shape
    assert tokens.shape[1] % 16 == 0 or tokens.shape[1] == 48
    for row, example_id in enumerate(batch["example_ids"]):
      n = len(examples[example_id].prompt) + 2  # template adds 2 tokens
      assert batch["prompt_lengths"][row] == n
      np.testing.assert_array_equal(mask[row], [0] * (tokens.shape[1] - n) + [1] * n)  # left padded
      np.testing.assert_array_equal(tokens[row, -n:], [1] + [ord("x") + 3] * (n - 2) + [2])
      assert np.all(tokens[row, :-n] == config.pad_id)
      assert batch["ground_truths"][row] == str(example_id) and batch["data_sources"][row] == "arith"
  widths = {b["prompt_tokens"].shape[1] for b in batches}
  assert widths <= {16, 48}


def test_overlong_drop_or_error():
  examples = _examples([3, 100, 5])
  pipeline = PromptPipeline(examples, FakeTokenizer(), PipelineConfig(num_prompts=1, max_prompt_len=20))
  assert pipeline.num_dropped == 1 and pipeline.num_examples == 2
  assert sorted(b["example_ids"][0] for b in _all_batches(pipeline)) == [0, 2]
  with pytest.raises(DataError, match="example 1 .* 102 tokens > max_prompt_len=20"):
    PromptPipeline(examples, FakeTokenizer(), PipelineConfig(num_prompts=1, max_prompt_len=20,
                                                             overlong="error"))
  with pytest.raises(DataError, match="no examples left"):
    PromptPipeline(_examples([50]), FakeTokenizer(), PipelineConfig(num_prompts=1, max_prompt_len=20))
  with pytest.raises(DataError, match="less than one global batch"):
    PromptPipeline(_examples([1, 2]), FakeTokenizer(), PipelineConfig(num_prompts=3, max_prompt_len=20))


def test_epochs_are_seeded_permutations():
  examples = _examples(range(1, 11))
  config = PipelineConfig(num_prompts=5, max_prompt_len=32, bucket_size=8, seed=3, num_epochs=3)
  batches = _all_batches(PromptPipeline(examples, FakeTokenizer(), config))
  ids = [i for b in batches for i in b["example_ids"]]
  epochs = [e for b in batches for e in b["epochs"]]
  assert len(ids) == 30 and epochs == [0] * 10 + [1] * 10 + [2] * 10
  per_epoch = [ids[i * 10:(i + 1) * 10] for i in range(3)]
  assert all(sorted(p) == list(range(10)) for p in per_epoch)
  assert per_epoch[0] != per_epoch[1] and per_epoch[0] != list(range(10))
  rebuilt = _all_batches(PromptPipeline(examples, FakeTokenizer(), config))
  assert [i for b in rebuilt for i in b["example_ids"]] == ids  # deterministic
  other = PipelineConfig(num_prompts=5, max_prompt_len=32, bucket_size=8, seed=4, num_epochs=3)
  assert [i for b in _all_batches(PromptPipeline(examples, FakeTokenizer(), other))
          for i in b["example_ids"]] != ids
  # Epoch boundary inside a batch: 10 examples, batch 4, 2 epochs -> 5 batches, one straddles.
  straddle = PipelineConfig(num_prompts=4, max_prompt_len=32, seed=3, num_epochs=2)
  batches = _all_batches(PromptPipeline(examples, FakeTokenizer(), straddle))
  assert [b["epochs"] for b in batches][2] == [0, 0, 1, 1] and len(batches) == 5


def test_sharding_splits_global_batches():
  examples = _examples(range(1, 24))  # 23 examples
  base = dict(num_prompts=2, max_prompt_len=32, seed=5, num_epochs=2)
  full = _all_batches(PromptPipeline(examples, FakeTokenizer(), PipelineConfig(shard_count=1, **base)))
  shards = [_all_batches(PromptPipeline(examples, FakeTokenizer(),
                                        PipelineConfig(shard_index=s, shard_count=3, **base)))
            for s in range(3)]
  assert len({len(s) for s in shards}) == 1 and len(shards[0]) == 46 // 6  # equal batch counts per host
  stream = [i for b in full for i in b["example_ids"]]
  for b in range(len(shards[0])):
    global_ids = sorted(i for s in shards for i in s[b]["example_ids"])
    assert global_ids == sorted(stream[b * 6:(b + 1) * 6])


def test_checkpoint_restore_gives_next_batches():
  examples = arith_examples(50, ArithConfig(seed=2))
  config = PipelineConfig(num_prompts=4, max_prompt_len=64, bucket_size=8, seed=9, num_epochs=None)
  pipeline = PromptPipeline(examples, FakeTokenizer(), config)
  iterator = pipeline.iterator()
  for _ in range(5):
    next(iterator)
  state = json.loads(json.dumps(iterator.get_state()))  # must survive JSON serialisation
  expected = [next(iterator) for _ in range(3)]
  fresh = PromptPipeline(examples, FakeTokenizer(), config).iterator()
  fresh.set_state(state)
  for want in expected:
    got = next(fresh)
    np.testing.assert_array_equal(got["prompt_tokens"], want["prompt_tokens"])
    np.testing.assert_array_equal(got["prompt_mask"], want["prompt_mask"])
    assert got["example_ids"] == want["example_ids"] and got["ground_truths"] == want["ground_truths"]
  # Infinite repetition keeps going past many epochs; different data refuses the state.
  for _ in range(40):
    next(fresh)
  other = PromptPipeline(examples[:-1], FakeTokenizer(), config).iterator()
  with pytest.raises(ValueError, match="different data or pipeline config"):
    other.set_state(state)


def test_real_train_file_pipeline():
  examples, _ = read_examples(os.path.join(DATA, "train/gsm8k_level1_train.parquet"), split="train", limit=64)
  config = PipelineConfig(num_prompts=8, max_prompt_len=256, bucket_size=32, seed=0, shard_index=1,
                          shard_count=2, overlong="drop")
  pipeline = PromptPipeline(examples, FakeTokenizer(), config)
  batches = _all_batches(pipeline)
  kept = pipeline.num_examples
  assert len(batches) == kept // 16 and kept + pipeline.num_dropped == 64
  assert all(b["prompt_tokens"].shape[0] == 8 and b["prompt_tokens"].shape[1] <= 256 for b in batches)
