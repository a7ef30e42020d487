"""Procedural multi-step integer arithmetic problems with exact answers (the embedded default task).

`arith_example(index, config)` is a pure function of (config.seed, index): the problem's random stream is
`numpy.random.default_rng([seed, index])`, so any example can be regenerated alone and datasets of any
size are reproducible. Two styles:
  * "expression": `Compute (17 + 4) * 3 - 8.`
  * "word":       a running-total story, one sentence per operation.
Difficulty knobs: `num_operands` (min, max), `operand_range` (lo, hi), `operations` (subset of "+-*"),
`allow_parentheses`. Division is excluded so every intermediate value is an exact integer. The ground
truth is the exact integer (Python ints, no overflow) as a string; the prompt asks for `\\boxed{}`, and
the "arith" registry reward checks it (`simko_jax.rewards.registry.arith_reward`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simko_jax.data.sources import Example

DATA_SOURCE = "arith"
INSTRUCTION = "Put the final answer in \\boxed{}."
_WORD_ACTIONS = {"+": "{name} gets {x} more", "-": "{name} gives away {x}",
                 "*": "{name}'s amount is multiplied by {x}"}
_NAMES = ("Ada", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana")


@dataclasses.dataclass(frozen=True)
class ArithConfig:
  """Difficulty knobs. Invariants: 2 <= num_operands[0] <= num_operands[1]; operand_range lo <= hi."""
  seed: int = 0
  num_operands: tuple[int, int] = (3, 5)
  operand_range: tuple[int, int] = (1, 20)
  operations: str = "+-*"
  allow_parentheses: bool = True
  style: str = "expression"  # "expression" | "word" | "mixed"

  def __post_init__(self):
    lo_n, hi_n = self.num_operands
    if not 2 <= lo_n <= hi_n:
      raise ValueError(f"num_operands must satisfy 2 <= min <= max, got {self.num_operands}")
    if self.operand_range[0] > self.operand_range[1]:
      raise ValueError(f"operand_range lo > hi: {self.operand_range}")
    if not self.operations or set(self.operations) - set("+-*"):
      raise ValueError(f"operations must be a non-empty subset of '+-*', got {self.operations!r}")
    if self.style not in ("expression", "word", "mixed"):
      raise ValueError(f"style must be expression|word|mixed, got {self.style!r}")


def _apply(op: str, a: int, b: int) -> int:
  return a + b if op == "+" else a - b if op == "-" else a * b


def _expression_problem(rng: np.random.Generator, config: ArithConfig) -> tuple[str, int]:
  """A left-to-right chain `((a op b) op c) ...`; parentheses are written where precedence needs them."""
  count = int(rng.integers(config.num_operands[0], config.num_operands[1] + 1))
  lo, hi = config.operand_range
  operands = [int(x) for x in rng.integers(lo, hi + 1, size=count)]
  ops = [config.operations[int(i)] for i in rng.integers(0, len(config.operations), size=count - 1)]
  if not config.allow_parentheses:
    # Evaluate with normal precedence: the text is exactly what is written.
    text = " ".join(f"{o} {x}" if i else str(x) for i, (o, x) in enumerate(zip([""] + ops, operands)))
    terms, signs = [operands[0]], [1]
    for op, x in zip(ops, operands[1:]):
      if op == "*":
        terms[-1] *= x
      else:
        terms.append(x)
        signs.append(1 if op == "+" else -1)
    return f"Compute {text}.", sum(s * t for s, t in zip(signs, terms))
  text, value, last_op = _fmt(operands[0]), operands[0], None
  for op, x in zip(ops, operands[1:]):
    if op == "*" and last_op in ("+", "-"):
      text = f"({text})"
    text, value, last_op = f"{text} {'*' if op == '*' else op} {_fmt(x)}", _apply(op, value, x), op
  return f"Compute {text}.", value


def _fmt(x: int) -> str:
  return f"({x})" if x < 0 else str(x)


def _word_problem(rng: np.random.Generator, config: ArithConfig) -> tuple[str, int]:
  count = int(rng.integers(config.num_operands[0], config.num_operands[1] + 1))
  lo, hi = config.operand_range
  name = _NAMES[int(rng.integers(0, len(_NAMES)))]
  value = int(rng.integers(lo, hi + 1))
  sentences = [f"{name} starts with {value} marbles."]
  for _ in range(count - 1):
    op = config.operations[int(rng.integers(0, len(config.operations)))]
    x = int(rng.integers(lo, hi + 1))
    sentences.append(_WORD_ACTIONS[op].format(name=name, x=x) + ".")
    value = _apply(op, value, x)
  sentences.append(f"How many marbles does {name} have at the end (the count may be negative)?")
  return " ".join(sentences), value


def arith_problem(index: int, config: ArithConfig = ArithConfig()) -> tuple[str, int]:
  """(problem text without the instruction, exact integer answer) for example `index`."""
  rng = np.random.default_rng([config.seed, index])
  style = config.style
  if style == "mixed":
    style = "word" if rng.random() < 0.5 else "expression"
  return (_word_problem if style == "word" else _expression_problem)(rng, config)


def arith_example(index: int, config: ArithConfig = ArithConfig()) -> Example:
  """Example `index` of the task: prompt ends with the `\\boxed{}` instruction; ground truth is str(int)."""
  text, answer = arith_problem(index, config)
  return Example(prompt=f"{text}\n{INSTRUCTION}", ground_truth=str(answer), data_source=DATA_SOURCE,
                 index=index)


def arith_examples(num_examples: int, config: ArithConfig = ArithConfig(), start: int = 0) -> list[Example]:
  """Examples `start .. start + num_examples - 1`."""
  return [arith_example(i, config) for i in range(start, start + num_examples)]
