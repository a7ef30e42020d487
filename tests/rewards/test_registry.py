"""Registry lookup rules and the Countdown verifier."""
from fractions import Fraction

import pytest

from simko_jax.rewards import registry
from simko_jax.rewards.countdown_check import (CountdownParseError, countdown_ground_truth,
                                               countdown_reward, evaluate_countdown_expression)
from simko_jax.rewards.math_verify_check import boxed_math_reward
from tests.rewards._pool_helpers import raising_reward


@pytest.mark.parametrize("source, fn", [
    ("math", boxed_math_reward), ("lighteval/MATH", boxed_math_reward),
    ("DigitalLearningGmbH/MATH-lighteval", boxed_math_reward), ("math500", boxed_math_reward),
    ("aime", boxed_math_reward), ("TianHongZXY/AIME2025", boxed_math_reward), ("amc", boxed_math_reward),
    ("minerva", boxed_math_reward), ("olympiadbench", boxed_math_reward),
    ("gsm8k", registry.gsm8k_reward), ("openai/gsm8k", registry.gsm8k_reward),
    ("arith", registry.arith_reward), ("countdown", countdown_reward), ("simplelr_abel", boxed_math_reward),
])
def test_lookup(source, fn):
  assert registry.get_reward_fn(source) is fn


def test_unknown_source_and_default():
  with pytest.raises(KeyError, match="no reward function for data source 'weird'"):
    registry.get_reward_fn("weird")
  assert registry.get_reward_fn("weird", default="math") is boxed_math_reward


def test_register_reward():
  registry.register_reward("test_src", raising_reward)
  try:
    assert registry.get_reward_fn("TEST_SRC") is raising_reward
    with pytest.raises(ValueError, match="already registered"):
      registry.register_reward("test_src", boxed_math_reward)
    with pytest.raises(TypeError, match="picklable"):
      registry.register_reward("test_lambda", lambda r, g: 1.0)
  finally:
    registry.unregister_reward("test_src")
  assert "test_src" not in registry.registered_sources()


GT = countdown_ground_truth([3, 7, 25, 50], 82)


@pytest.mark.parametrize("response, expected", [
    ("<answer>50 + 25 + 7</answer>", 1.0), ("<answer>(50+25+7) = 82</answer>", 1.0),
    ("\\boxed{50+25+7}", 1.0), ("<answer>50 + 25 + 7 + 3 - 3</answer>", 0.0),  # 3 used twice
    ("<answer>82</answer>", 0.0), ("<answer>50+32</answer>", 0.0), ("<answer>50+25+7)</answer>", 0.0),
    ("<answer>__import__('os')</answer>", 0.0), ("<answer>50 / (7 - 7) + 82</answer>", 0.0),
    ("<answer>" + "(" * 100 + "3" + ")" * 100 + "</answer>", 0.0), ("no answer", 0.0),
    ("<answer>(3 \\times 25) + 7</answer>", 1.0),
])
def test_countdown_reward(response, expected):
  assert countdown_reward(response, GT) == expected


def test_countdown_exact_fractions():
  assert evaluate_countdown_expression("(1 + 1/3) * 3", [1, 1, 3, 3]) == Fraction(4)
  assert evaluate_countdown_expression("7 - 3 - 2", [7, 3, 2]) == 2  # left-associative
  assert evaluate_countdown_expression("2 * 3 + 4", [2, 3, 4]) == 10  # precedence
  with pytest.raises(CountdownParseError):
    evaluate_countdown_expression("-3 + 5", [3, 5])  # no unary minus
  with pytest.raises(ValueError, match="bad countdown ground truth"):
    countdown_reward("<answer>1</answer>", "not json")
