"""Training and held-out evaluation examples for `config.data.task`.

Procedural tasks draw training examples from indices [0, TRAIN_SIZE) and held-out evaluation examples
from [HELD_OUT_START, ...), so the two never overlap. `task_difficulty` d:
  arith      d = 1: a + b with a, b in [1, 9];  d = 2: a +- b in [1, 20];  d = 3: three operands +- in
             [1, 20];  d >= 4: d - 1 operands with + - * in [1, 20]
  countdown  d+1 numbers in [1, 50] (d >= 1)
`data.answer_format` = "boxed" asks for `\\boxed{}` and checks the last box ("arith" reward);
"plain" asks "What is ...?" and checks the last number ("arith_plain"), for small models such as
SmolLM2-135M that cannot yet produce the box (measured: base pass@1 0% with the box, ~12% plain).
"files" reads `data.train_files` (verl parquet / Qwen-math JSONL) with split="train", which refuses any
file under an `eval/` directory.
"""

from __future__ import annotations

import dataclasses

from simko_jax.data.arith_task import ArithConfig, arith_examples
from simko_jax.data.countdown import CountdownConfig, countdown_examples
from simko_jax.data.sources import DataError, Example, read_many

TRAIN_SIZE = 20_000
HELD_OUT_START = 1_000_000


def arith_config(difficulty: int, seed: int) -> ArithConfig:
  if difficulty == 1:
    return ArithConfig(seed=seed, num_operands=(2, 2), operand_range=(1, 9), operations="+")
  operands = 2 if difficulty == 2 else 3 if difficulty == 3 else difficulty - 1
  ops = "+-" if difficulty <= 3 else "+-*"
  return ArithConfig(seed=seed, num_operands=(operands, operands), operand_range=(1, 20),
                     operations=ops, allow_parentheses=True, style="expression")


def _plain(example: Example) -> Example:
  """'Compute X.\\nPut the final answer in \\boxed{}.' -> 'What is X?' checked by its last number."""
  expression = example.prompt.split("\n", 1)[0].removeprefix("Compute ").rstrip(".")
  return dataclasses.replace(example, prompt=f"What is {expression}?", data_source="arith_plain")


def _arith(data_cfg, seed: int, count: int, start: int) -> list[Example]:
  examples = arith_examples(count, arith_config(data_cfg.task_difficulty, seed), start=start)
  return [_plain(e) for e in examples] if data_cfg.answer_format == "plain" else examples


def countdown_config(difficulty: int, seed: int) -> CountdownConfig:
  n = max(2, difficulty + 1)
  return CountdownConfig(seed=seed, num_numbers=(n, n), number_range=(1, 50))


def train_examples(data_cfg, seed: int) -> list[Example]:
  """The training set of the configured task."""
  if data_cfg.task == "arith":
    return _arith(data_cfg, seed, TRAIN_SIZE, 0)
  if data_cfg.task == "countdown":
    return countdown_examples(TRAIN_SIZE, countdown_config(data_cfg.task_difficulty, seed))
  paths = [p.strip() for p in data_cfg.train_files.split(",") if p.strip()]
  on_error = "skip" if data_cfg.on_bad_row == "skip" else "raise"
  examples, _ = read_many(paths, split="train", on_error=on_error)
  if not examples:
    raise DataError(f"config.data.train_files = {data_cfg.train_files!r} yielded no examples")
  return examples


def held_out_examples(data_cfg, seed: int, count: int) -> list[Example]:
  """`count` evaluation examples that are never trained on (procedural tasks only)."""
  if data_cfg.task == "arith":
    return _arith(data_cfg, seed, count, HELD_OUT_START)
  if data_cfg.task == "countdown":
    return countdown_examples(count, countdown_config(data_cfg.task_difficulty, seed),
                              start=HELD_OUT_START)
  return []
