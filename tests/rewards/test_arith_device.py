"""arith_device: equal to `arith_reward` / `final_number_reward`, reward for reward, on 10,000 random and
adversarial responses plus hand-picked ones, each tokenized by SmolLM2 and by the character tokenizer,
in one jitted call."""
import jax
import numpy as np
import pytest

from simko_jax.rewards.arith_device import arith_rewards, arith_truth
from simko_jax.rewards.registry import arith_reward, final_number_reward
from simko_jax.rewards.token_text import response_chars
from tests.rewards._responses import arith_cases, token_rows

NUM_RESPONSES = 10_000
# (response, truth, boxed reward, plain reward): the host's verdicts, checked below on both sides.
HAND_PICKED = [("\\boxed{42}", "42", 1, 1), ("\\boxed{042}", "42", 1, 1), ("\\boxed{-0}", "0", 1, 1),
               ("\\boxed{4,2}", "42", 1, 1), ("\\boxed{42.0}", "42", 0, 1), ("\\boxed{\\frac{1}{2}}", "42", 0, 0),
               ("\\boxed{42", "42", 0, 1), ("so 42.", "42", 0, 1), ("\\boxedx{42}", "42", 0, 1),
               ("\\boxed 42.,", "42", 1, 1), ("\\boxed{41} then \\boxed{42}", "42", 1, 1), (".0", "0", 0, 1),
               ("-.0", "0", 0, 0), ("", "0", 0, 0), ("\\boxed{}", "0", 0, 0), ("9" * 51, "9" * 51, 0, 0),
               ("\\boxed{\xa0٤٢\u3000}", "42", 1, 1), ("\\boxedé{41} 42", "42", 0, 1), ("$-$42", "-42", 0, 1)]


@pytest.fixture(scope="module")
def scored(smollm2_tokenizer, char_tokenizer):
  generated, generated_truths = arith_cases(NUM_RESPONSES, seed=0)
  responses = generated + [case[0] for case in HAND_PICKED]
  truths = (generated_truths + [case[1] for case in HAND_PICKED]) * 2  # rows: SmolLM2, then char tokenizer
  table, tokens, mask, texts = token_rows(smollm2_tokenizer, char_tokenizer, responses, seed=0,
                                             exact_last=len(HAND_PICKED))
  max_chars = -(-max(len(t) for t in texts) // 32) * 32

  @jax.jit
  def both(table, tokens, mask, truth):
    chars, length, _ = response_chars(table, tokens, mask, max_chars)
    return arith_rewards(chars, length, truth, "boxed"), arith_rewards(chars, length, truth, "plain")

  boxed, plain = map(np.asarray, both(table, tokens, mask, arith_truth(truths)))
  return texts, truths, {"boxed": boxed, "plain": plain}


@pytest.mark.parametrize("answer_format, host_fn", [("boxed", arith_reward), ("plain", final_number_reward)])
def test_equal_to_host_verifiers(scored, answer_format, host_fn):
  texts, truths, rewards = scored
  got = rewards[answer_format]
  want = np.array([host_fn(text, truth) for text, truth in zip(texts, truths)], np.float32)
  differ = np.nonzero(got != want)[0]
  assert not len(differ), f"{len(differ)} differ, e.g. {[(texts[i], truths[i], got[i]) for i in differ[:5]]}"
  assert 0.2 * len(want) < want.sum() < 0.8 * len(want)  # both rewards occur often


def test_hand_picked_cases(scored):
  texts, _, rewards = scored
  tail = slice(NUM_RESPONSES, NUM_RESPONSES + len(HAND_PICKED))  # SmolLM2 rows, decoded losslessly
  assert texts[tail] == [c[0] for c in HAND_PICKED]
  np.testing.assert_array_equal(rewards["boxed"][tail], [c[2] for c in HAND_PICKED])
  np.testing.assert_array_equal(rewards["plain"][tail], [c[3] for c in HAND_PICKED])
  for text, gold, boxed, plain in HAND_PICKED:
    assert (arith_reward(text, gold), final_number_reward(text, gold)) == (boxed, plain), text


def test_bad_ground_truth_is_one_clear_error():
  with pytest.raises(ValueError, match="'forty' is not an integer"):
    arith_truth(["1", "forty"])
