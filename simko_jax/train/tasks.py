"""Training and held-out evaluation examples for `config.data.task`.

Procedural tasks draw training examples from indices [0, TRAIN_SIZE) and held-out evaluation examples
from [HELD_OUT_START, ...), so the two never overlap. `task_difficulty` d sets the number of operations:
  arith      d+1 operands in [1, 20]; d = 1, 2 use only + and -, d >= 3 adds *
  countdown  d+1 numbers in [1, 50] (d >= 1)
"files" reads `data.train_files` (verl parquet / Qwen-math JSONL) with split="train", which refuses any
file under an `eval/` directory.
"""

from __future__ import annotations

from simko_jax.data.arith_task import ArithConfig, arith_examples
from simko_jax.data.countdown import CountdownConfig, countdown_examples
from simko_jax.data.sources import DataError, Example, read_many

TRAIN_SIZE = 20_000
HELD_OUT_START = 1_000_000


def arith_config(difficulty: int, seed: int) -> ArithConfig:
  ops = "+-" if difficulty <= 2 else "+-*"
  return ArithConfig(seed=seed, num_operands=(difficulty + 1, difficulty + 1), operand_range=(1, 20),
                     operations=ops, allow_parentheses=True, style="expression")


def countdown_config(difficulty: int, seed: int) -> CountdownConfig:
  n = max(2, difficulty + 1)
  return CountdownConfig(seed=seed, num_numbers=(n, n), number_range=(1, 50))


def train_examples(data_cfg, seed: int) -> list[Example]:
  """The training set of the configured task."""
  if data_cfg.task == "arith":
    return arith_examples(TRAIN_SIZE, arith_config(data_cfg.task_difficulty, seed))
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
    return arith_examples(count, arith_config(data_cfg.task_difficulty, seed), start=HELD_OUT_START)
  if data_cfg.task == "countdown":
    return countdown_examples(count, countdown_config(data_cfg.task_difficulty, seed),
                              start=HELD_OUT_START)
  return []
