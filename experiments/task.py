"""The mechanism study's task: compact Countdown for a character-level model trained from scratch.

Problems come from the library's generator (`simko_jax.data.countdown.countdown_problem`, a pure function
of (seed, index)); only the prompt is shortened so a tiny model reads it cheaply:

  prompt   "3 7 4 -> 25"                     (chat-templated: "User: 3 7 4 -> 25\\nAssistant: ")
  response "\\boxed{3*7+4}"                   verified by the library's "countdown" reward

Every problem has at least one solution; most have several (`fold_solutions` lists the left-to-right
ones: an ordered subset of the numbers combined with + - * /, intermediate values positive integers,
division exact). The warm-up trains on a uniformly random one of them per visit, so the warm-started
policy spreads probability over several correct answers, as a pretrained model does.

Training problems are indices [0, TRAIN_SIZE), held-out ones start at HELD_OUT_START (as in
`simko_jax.train.tasks`), so evaluation problems are never trained on.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from simko_jax.data.countdown import CountdownConfig, countdown_problem
from simko_jax.data.sources import Example
from simko_jax.rewards.countdown_check import countdown_ground_truth, countdown_reward

TRAIN_SIZE = 20_000
HELD_OUT_START = 1_000_000
DATA_SOURCE = "countdown"


def task_config(cfg) -> CountdownConfig:
  """`cfg.task` (seed, num_numbers, max_number) -> the generator's config."""
  return CountdownConfig(seed=cfg.seed, num_numbers=(cfg.num_numbers, cfg.num_numbers),
                         number_range=(1, cfg.max_number))


def prompt_for(numbers, target) -> str:
  return f"{' '.join(str(n) for n in numbers)} -> {target}"


def example(index: int, config: CountdownConfig) -> Example:
  numbers, target, _ = countdown_problem(index, config)
  return Example(prompt=prompt_for(numbers, target),
                 ground_truth=countdown_ground_truth(numbers, target), data_source=DATA_SOURCE,
                 index=index)


def train_examples(config: CountdownConfig, count: int = TRAIN_SIZE) -> list[Example]:
  return [example(i, config) for i in range(count)]


def held_out_examples(config: CountdownConfig, count: int) -> list[Example]:
  return [example(HELD_OUT_START + i, config) for i in range(count)]


def _render(numbers, ops) -> str:
  """Left fold `((n0 op0 n1) op1 n2) ...` with the fewest parentheses."""
  text, previous = str(numbers[0]), None
  for op, x in zip(ops, numbers[1:]):
    if op in "*/" and previous in ("+", "-"):
      text = f"({text})"
    text, previous = f"{text}{op}{x}", op
  return text


@functools.lru_cache(maxsize=None)
def fold_solutions(numbers: tuple[int, ...], target: int) -> tuple[str, ...]:
  """Every distinct left-fold expression over an ordered subset (size >= 2) that equals `target`,
  with positive integer intermediates (the generator's own rule), in a fixed order."""
  found = []
  for size in range(2, len(numbers) + 1):
    for order in itertools.permutations(range(len(numbers)), size):
      values = [numbers[i] for i in order]
      for ops in itertools.product("+-*/", repeat=size - 1):
        value = values[0]
        for op, x in zip(ops, values[1:]):
          if op == "+":
            value += x
          elif op == "*":
            value *= x
          elif op == "-":
            value = value - x if value - x > 0 else None
          else:
            value = value // x if value % x == 0 else None
          if value is None:
            break
        if value == target:
          found.append(_render(values, ops))
  return tuple(dict.fromkeys(found))


def response_for(expression: str) -> str:
  return f"\\boxed{{{expression}}}"


def sft_pairs(config: CountdownConfig, step: int, batch_size: int, seed: int) -> tuple[list, list]:
  """The warm-up batch of `step`: random training problems, each with a random fold solution.
  A pure function of (seed, step)."""
  rng = np.random.default_rng([seed, step])
  prompts, responses = [], []
  for index in rng.integers(0, TRAIN_SIZE, size=batch_size):
    numbers, target, _ = countdown_problem(int(index), config)
    solutions = fold_solutions(tuple(numbers), int(target))
    prompts.append(prompt_for(numbers, target))
    responses.append(response_for(solutions[int(rng.integers(len(solutions)))]))
  return prompts, responses


def content_overlap(config: CountdownConfig, held_out: list[Example]) -> tuple[int, int]:
  """(distinct training problems, held-out problems whose content (number multiset, target) also
  occurs among the training problems). Held-out problems are disjoint from training ones by index,
  not necessarily by content: a small number range has few distinct problems."""
  train = set()
  for i in range(TRAIN_SIZE):
    numbers, target, _ = countdown_problem(i, config)
    train.add((tuple(sorted(numbers)), target))
  seen = 0
  for ex in held_out:
    numbers, target, _ = countdown_problem(ex.index, config)
    seen += (tuple(sorted(numbers)), target) in train
  return len(train), seen


def check_solutions(config: CountdownConfig, count: int = 200) -> None:
  """Sanity check: every listed solution of the first `count` problems is rewarded 1 by the verifier."""
  for i in range(count):
    numbers, target, _ = countdown_problem(i, config)
    solutions = fold_solutions(tuple(numbers), int(target))
    assert solutions, (numbers, target)
    for s in solutions:
      assert countdown_reward(response_for(s), countdown_ground_truth(numbers, target)) == 1.0, s


def content_of(numbers, target) -> tuple[tuple[int, ...], int]:
  """A problem's content: the multiset of its numbers (sorted) and its target. Two problems with the
  same content are the same problem whatever their indices or the order of their numbers."""
  return tuple(sorted(int(n) for n in numbers)), int(target)


def clean_split(config: CountdownConfig, num_eval: int) -> tuple[list[int], list[Example]]:
  """(training indices, evaluation examples) disjoint in content.

  Evaluation: the first `num_eval` held-out indices (from HELD_OUT_START) with pairwise distinct
  content. Training: the indices in [0, TRAIN_SIZE) whose content is not among the evaluation
  problems' (so neither the warm-up nor RL ever sees an evaluation problem). Asserted before returning.
  """
  eval_examples, eval_contents, index = [], set(), HELD_OUT_START
  while len(eval_examples) < num_eval:
    numbers, target, _ = countdown_problem(index, config)
    if content_of(numbers, target) not in eval_contents:
      eval_contents.add(content_of(numbers, target))
      eval_examples.append(example(index, config))
    index += 1
    if index - HELD_OUT_START > 100 * num_eval:
      raise ValueError(f"only {len(eval_examples)} distinct held-out problems found; the task's "
                       f"number range is too small for num_eval = {num_eval}")
  train_indices = []
  for i in range(TRAIN_SIZE):
    numbers, target, _ = countdown_problem(i, config)
    if content_of(numbers, target) not in eval_contents:
      train_indices.append(i)
  train_contents = {content_of(*countdown_problem(i, config)[:2]) for i in train_indices}
  assert not train_contents & eval_contents, "evaluation and training problems share content"
  return train_indices, eval_examples


def sft_pairs_from(config: CountdownConfig, indices, step: int, batch_size: int,
                   seed: int) -> tuple[list, list]:
  """`sft_pairs` restricted to the training problems `indices` (a pure function of (seed, step))."""
  rng = np.random.default_rng([seed, step])
  prompts, responses = [], []
  for j in rng.integers(0, len(indices), size=batch_size):
    numbers, target, _ = countdown_problem(int(indices[int(j)]), config)
    solutions = fold_solutions(tuple(numbers), int(target))
    prompts.append(prompt_for(numbers, target))
    responses.append(response_for(solutions[int(rng.integers(len(solutions)))]))
  return prompts, responses
