"""countdown_device: equal to `countdown_reward`, reward for reward, on 10,000 random and adversarial
responses plus hand-picked ones, each tokenized by SmolLM2 and by the character tokenizer, in one jitted
call."""
import jax
import numpy as np
import pytest

from simko_jax.rewards.countdown_check import countdown_ground_truth, countdown_reward
from simko_jax.rewards.countdown_device import countdown_rewards, countdown_truth
from simko_jax.rewards.token_text import response_chars
from tests.rewards._responses import countdown_cases, token_rows

NUM_RESPONSES = 10_000
# (response, host reward for numbers [3, 5, 3] and target 24), checked below on both sides.
HAND_PICKED = [("<answer>(3 + 5) * 3</answer>", 1), ("\\boxed{(3+5)\\times 3 = 24}", 1), ("<answer>3*8</answer>", 0),
               ("<answer>(3+5)*3*1</answer>", 0), ("<answer>(3+5)*3</answer><answer>3</answer>", 0),
               ("<answer>5*3+3*3</answer>", 0), ("<answer>(3 + 5) * 3", 0), ("<answer>((3+5))*3</answer>", 1),
               ("<answer>(3+5)*3/(5-5)</answer>", 0), ("<answer>-3+5</answer>", 0), ("<answer>()3*8</answer>", 0),
               ("<answer>" + "(" * 32 + "(3+5)*3" + ")" * 32 + "</answer>", 0),
               ("<answer>" + "(" * 31 + "(3+5)*3" + ")" * 31 + "</answer>", 1),
               ("<answer>03 x (5 + 3)</answer>", 1), ("<answer>\\left(3+5\\right)\\cdot 3</answer>", 1),
               ("<answer>3 * (5 + 3) + 0</answer>", 0), ("", 0), ("<answer></answer>", 0), ("(3+5)*3", 0)]
TRUTH = countdown_ground_truth([3, 5, 3], 24)


@pytest.fixture(scope="module")
def scored(smollm2_tokenizer, char_tokenizer):
  generated, generated_truths = countdown_cases(NUM_RESPONSES, seed=1)
  responses = generated + [text for text, _ in HAND_PICKED]
  truths = (generated_truths + [TRUTH] * len(HAND_PICKED)) * 2  # rows: SmolLM2, then char tokenizer
  table, tokens, mask, texts = token_rows(smollm2_tokenizer, char_tokenizer, responses, seed=1,
                                             exact_last=len(HAND_PICKED))
  max_chars = -(-max(len(t) for t in texts) // 32) * 32

  @jax.jit
  def rewards(table, tokens, mask, truth):
    chars, length, _ = response_chars(table, tokens, mask, max_chars)
    return countdown_rewards(chars, length, truth)

  return texts, truths, np.asarray(rewards(table, tokens, mask, countdown_truth(truths)))


def test_equal_to_host_verifier(scored):
  texts, truths, got = scored
  want = np.array([countdown_reward(text, truth) for text, truth in zip(texts, truths)], np.float32)
  differ = np.nonzero(got != want)[0]
  assert not len(differ), f"{len(differ)} differ, e.g. {[(texts[i], truths[i], got[i]) for i in differ[:5]]}"
  assert 0.1 * len(want) < want.sum() < 0.8 * len(want)  # both rewards occur often


def test_hand_picked_cases(scored):
  texts, _, got = scored
  tail = slice(NUM_RESPONSES, NUM_RESPONSES + len(HAND_PICKED))  # SmolLM2 rows, decoded losslessly
  assert texts[tail] == [text for text, _ in HAND_PICKED]
  np.testing.assert_array_equal(got[tail], [want for _, want in HAND_PICKED])
  assert [countdown_reward(text, TRUTH) for text, _ in HAND_PICKED] == [want for _, want in HAND_PICKED]


def test_bad_or_too_large_problems_are_one_clear_error():
  with pytest.raises(ValueError, match="bad countdown ground truth"):
    countdown_truth(['{"numbers": [1, 2]}'])
  with pytest.raises(ValueError, match="too large for exact int64 arithmetic"):
    countdown_truth([countdown_ground_truth([10 ** 6] * 11, 5)])
  huge_target = countdown_truth([countdown_ground_truth([2, 3], 10 ** 30)])
  assert huge_target.target_Bx2.shape == (1, 2)
