"""on_device: the entry point picks the on-device verifier exactly where the host registry picks the Python
function it reproduces, else the host callback; a DeviceReward is jittable with rows sharded over 8 devices."""
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from simko_jax.parallel import MESH_AXES, make_mesh
from simko_jax.rewards.host_callback import HostRewards
from simko_jax.rewards.on_device import DeviceReward, batch_reward_for, repeat_rows, task_data_source
from simko_jax.rewards.registry import arith_reward
from simko_jax.rewards.token_text import UnsupportedTokenizer


class _SentencePieceLike:
  _kind = "sentencepiece"
  chat_template = None


@pytest.mark.parametrize("source, kind", [("arith", "boxed"), ("arith_plain", "plain"), ("countdown", "countdown"),
                                          ("Jiayi-Pan/Countdown-Tasks-3to4", "countdown")])
def test_procedural_sources_run_on_device(char_tokenizer, source, kind):
  reward = batch_reward_for(source, char_tokenizer)
  assert isinstance(reward, DeviceReward) and reward.on_device and reward.kind == kind


def test_other_sources_and_tokenizers_use_the_host_callback(char_tokenizer):
  pool = object()  # not called here
  assert isinstance(batch_reward_for("math", char_tokenizer, pool=pool), HostRewards)
  assert isinstance(batch_reward_for("arith", _SentencePieceLike(), pool=pool), HostRewards)
  with pytest.raises(ValueError, match="'math' has no on-device verifier: pass pool="):
    batch_reward_for("math", char_tokenizer)
  with pytest.raises(UnsupportedTokenizer, match="use the host reward callback"):
    batch_reward_for("arith", _SentencePieceLike())


def test_task_data_source():
  assert [task_data_source("arith"), task_data_source("arith", "plain"), task_data_source("countdown")] == [
      "arith", "arith_plain", "countdown"]
  with pytest.raises(ValueError, match="pass each example's data_source"):
    task_data_source("files")


def test_device_reward_with_rows_sharded_over_8_devices(char_tokenizer):
  group_size, truths = 2, ["3", "-4", "5", "60", "7", "0", "9", "10"]
  responses = [f"\\boxed{{{t}}}" if r % 2 == 0 else f"\\boxed{{{t}1}}" for t in truths for r in range(group_size)]
  ids = [char_tokenizer.encode(text) for text in responses]
  tokens = np.array([i + [0] * (16 - len(i)) for i in ids], np.int32)
  mask = np.array([[1] * len(i) + [0] * (16 - len(i)) for i in ids], np.int32)
  reward = batch_reward_for("arith", char_tokenizer)
  truth = reward.prepare(truths)
  step = jax.jit(lambda t, m, tr: reward(t, m, repeat_rows(tr, group_size)))
  by_row = NamedSharding(make_mesh(2, 2, 2), PartitionSpec(MESH_AXES))  # rows over all 8 devices
  out = step(*jax.device_put((tokens, mask), by_row), jax.device_put(truth, by_row))
  want = [arith_reward(text, truths[r // group_size]) for r, text in enumerate(responses)]
  np.testing.assert_array_equal(out["rewards"], want)
  assert sum(want) == len(truths) and int(out["truncated"]) == 0
