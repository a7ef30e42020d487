"""Procedural tasks: determinism, exact ground truths (checked with an independent evaluator), rewards."""
import json

import pytest

from simko_jax.data.arith_task import ArithConfig, arith_example, arith_examples, arith_problem
from simko_jax.data.countdown import CountdownConfig, countdown_example, countdown_problem
from simko_jax.rewards.countdown_check import _Parser, _tokenize
from simko_jax.rewards.registry import compute_reward


def _independent_value(expression: str) -> int:
  """Evaluate with the countdown recursive-descent parser (exact Fractions, no eval)."""
  value = _Parser(_tokenize(expression)).parse()
  assert value.denominator == 1
  return int(value)


@pytest.mark.parametrize("config", [ArithConfig(), ArithConfig(seed=3, num_operands=(2, 7), operations="*-"),
                                    ArithConfig(seed=1, allow_parentheses=False, operand_range=(0, 999))])
def test_arith_expression_ground_truth(config):
  for index in range(200):
    text, answer = arith_problem(index, config)
    expression = text.removeprefix("Compute ").removesuffix(".")
    assert _independent_value(expression) == answer, text
    operands = [t for t in _tokenize(expression) if isinstance(t, int)]
    assert config.num_operands[0] <= len(operands) <= config.num_operands[1]
    assert all(config.operand_range[0] <= x <= config.operand_range[1] for x in operands)
    assert {t for t in _tokenize(expression) if isinstance(t, str) and t in "+-*"} <= set(config.operations)


def test_arith_determinism_and_reward():
  config = ArithConfig(seed=7, style="mixed")
  assert arith_examples(20, config) == arith_examples(20, config)
  assert arith_examples(5, config, start=10) == arith_examples(20, config)[10:15]
  assert arith_examples(20, config) != arith_examples(20, ArithConfig(seed=8, style="mixed"))
  styles = {("marbles" in e.prompt) for e in arith_examples(20, config)}
  assert styles == {True, False}
  example = arith_example(5, config)
  assert example.prompt.endswith("Put the final answer in \\boxed{}.") and example.data_source == "arith"
  assert compute_reward(f"so \\boxed{{{example.ground_truth}}}", example.ground_truth, "arith") == 1.0
  wrong = f"so \\boxed{{{int(example.ground_truth) + 1}}}"
  assert compute_reward(wrong, example.ground_truth, "arith") == 0.0
  with pytest.raises(ValueError):
    ArithConfig(num_operands=(1, 3))
  with pytest.raises(ValueError):
    ArithConfig(operations="/")


def test_word_problem_answer():
  text, answer = arith_problem(0, ArithConfig(style="word", seed=2))
  value = None
  for sentence in text.split(". "):
    words = sentence.split()
    if "starts" in words:
      value = int(words[3])
    elif "more" in words:
      value += int(words[2])
    elif "away" in words:
      value -= int(words[3])
    elif "multiplied" in words:
      value *= int(words[-1].rstrip("."))
  assert value == answer


def test_countdown_generated_problems_are_solvable():
  config = CountdownConfig(seed=4, num_numbers=(3, 6))
  for index in range(200):
    numbers, target, solution = countdown_problem(index, config)
    assert config.num_numbers[0] <= len(numbers) <= config.num_numbers[1] and target > 0
    example = countdown_example(index, config)
    assert json.loads(example.ground_truth) == {"numbers": numbers, "target": target}
    assert compute_reward(f"\\boxed{{{solution}}}", example.ground_truth, "countdown") == 1.0
    assert compute_reward(f"<answer>{solution} + 1</answer>", example.ground_truth, "countdown") == 0.0
  assert countdown_example(3, config) == countdown_example(3, config)
