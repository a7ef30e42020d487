"""Countdown task: reach a target with + - * / and parentheses, using each given number at most once.

`countdown_example(index, config)` is a pure function of (config.seed, index). The target is built by
combining a random subset of the numbers with random operations (division only when exact, results kept
positive), so every problem has at least one solution. Ground truth is the JSON written by
`simko_jax.rewards.countdown_check.countdown_ground_truth`; the "countdown" registry reward verifies the
response's expression with a hand-written parser (no eval). Re-exports the verifier for convenience.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simko_jax.data.sources import Example
from simko_jax.rewards.countdown_check import (countdown_ground_truth, countdown_reward,
                                               evaluate_countdown_expression)

__all__ = ["CountdownConfig", "countdown_example", "countdown_examples", "countdown_problem",
           "countdown_reward", "evaluate_countdown_expression"]

DATA_SOURCE = "countdown"


@dataclasses.dataclass(frozen=True)
class CountdownConfig:
  """Invariants: 2 <= num_numbers[0] <= num_numbers[1]; 1 <= number_range lo <= hi."""
  seed: int = 0
  num_numbers: tuple[int, int] = (3, 4)
  number_range: tuple[int, int] = (1, 50)

  def __post_init__(self):
    if not 2 <= self.num_numbers[0] <= self.num_numbers[1]:
      raise ValueError(f"num_numbers must satisfy 2 <= min <= max, got {self.num_numbers}")
    if not 1 <= self.number_range[0] <= self.number_range[1]:
      raise ValueError(f"number_range must satisfy 1 <= lo <= hi, got {self.number_range}")


def countdown_problem(index: int, config: CountdownConfig = CountdownConfig()) -> tuple[list[int], int, str]:
  """(numbers, target, one solution expression) for example `index`."""
  rng = np.random.default_rng([config.seed, index])
  count = int(rng.integers(config.num_numbers[0], config.num_numbers[1] + 1))
  lo, hi = config.number_range
  numbers = [int(x) for x in rng.integers(lo, hi + 1, size=count)]
  order = [int(i) for i in rng.permutation(count)]
  used = order[:int(rng.integers(2, count + 1))]
  value, expression = numbers[used[0]], str(numbers[used[0]])
  for i in used[1:]:
    x = numbers[i]
    candidates = [("+", value + x), ("*", value * x)]
    if value - x > 0:
      candidates.append(("-", value - x))
    if value % x == 0:
      candidates.append(("/", value // x))
    op, new_value = candidates[int(rng.integers(0, len(candidates)))]
    expression, value = f"({expression} {op} {x})", new_value
  return numbers, value, expression


def countdown_example(index: int, config: CountdownConfig = CountdownConfig()) -> Example:
  """Example `index`: prompt asks for the expression in `\\boxed{}`; ground truth is the JSON problem."""
  numbers, target, _ = countdown_problem(index, config)
  prompt = (f"Using the numbers {numbers}, create an equation that equals {target}. You can use basic "
            "arithmetic operations (+, -, *, /) and parentheses, and each number can be used at most once. "
            "Put the final expression (without the result) in \\boxed{}.")
  return Example(prompt=prompt, ground_truth=countdown_ground_truth(numbers, target),
                 data_source=DATA_SOURCE, index=index)


def countdown_examples(num_examples: int, config: CountdownConfig = CountdownConfig(),
                       start: int = 0) -> list[Example]:
  """Examples `start .. start + num_examples - 1`."""
  return [countdown_example(i, config) for i in range(start, start + num_examples)]
