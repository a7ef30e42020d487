"""Readers for RLVR problem files, normalised to `Example(prompt, ground_truth, data_source, index)`.

Formats (auto-detected from the file name, then the columns; override with `fmt=`):
  "verl"          parquet: `prompt` = chat message list (the LAST user message's `content` is the prompt),
                  `reward_model.ground_truth` = answer string, or struct whose `target` is the answer
                  (an empty `target` falls back to the last `\\boxed{}` of the struct's `solution`),
                  `data_source` column (str).
  "problem_answer" jsonl `problem`, `answer` (AIME24, Qwen2.5-Math eval format).
  "minerva"       jsonl `problem`, `solution`: the answer is the solution's last `\\boxed{}`.
  "olympiadbench" jsonl `question`, `final_answer` (list, or list written as a string; items joined ", ").
  "gsm8k"         jsonl `question`, `answer`: the answer follows the last `####`.
`Example.index` is the 0-based row number in the file (stable, unique per file). For jsonl formats the
data source is the format's registry name ("aime24", "minerva", "olympiadbench", "gsm8k") unless
`data_source=` overrides it (it also overrides the verl column).

Errors: a malformed row (missing field, wrong type, non-UTF-8, invalid JSON, empty prompt, missing answer)
raises `DataError` naming the file, the row number and the field; with `on_error="skip"` it is skipped
and counted in the returned `ReadStats` (and logged once per file as a warning). An empty file, or no valid
row left, always raises `DataError`. `Example.path` (not part of equality) records the file it came from.
`split="train"` refuses any path with an `eval` directory component (`EvalSplitError`): training must
never read evaluation files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Iterator

from simko_jax import storage
from simko_jax.rewards.extract import (gold_from_gsm8k_answer, gold_from_math_solution,
                                       gold_from_olympiad_final_answer)

FORMATS = ("verl", "problem_answer", "minerva", "olympiadbench", "gsm8k")
_JSONL_SOURCE_NAMES = {"problem_answer": "aime24", "minerva": "minerva", "olympiadbench": "olympiadbench",
                       "gsm8k": "gsm8k"}
_MAX_REPORTED_ERRORS = 20
_EXPECTED_COLUMNS = ("verl parquet (prompt, reward_model, data_source) or jsonl with problem+answer, "
                     "problem+solution, question+answer or question+final_answer")
log = logging.getLogger(__name__)


class DataError(ValueError):
  """A data file or row is unusable. The message names file, row and field."""


class EvalSplitError(DataError):
  """An evaluation file was requested for training."""


@dataclasses.dataclass(frozen=True)
class Example:
  """One problem. `prompt` is the user message text; `ground_truth` the answer string for the reward."""
  prompt: str
  ground_truth: str
  data_source: str
  index: int
  path: str = dataclasses.field(default="", compare=False, repr=False)


@dataclasses.dataclass
class ReadStats:
  """Row counts of one read; `errors` holds the first few skipped-row messages."""
  path: str
  fmt: str
  num_rows: int = 0
  num_examples: int = 0
  num_skipped: int = 0
  errors: list[str] = dataclasses.field(default_factory=list)


class _RowError(Exception):
  def __init__(self, field: str, message: str):
    super().__init__(message)
    self.field = field


def check_split(path: str, split: str | None) -> None:
  """Raise EvalSplitError if `split == "train"` and `path` lies under an `eval` directory."""
  if split == "train":
    parts = storage.absolute(path).replace("\\", "/").split("/")
    if "eval" in parts[:-1]:
      raise EvalSplitError(f"{path}: refusing to read a file under an 'eval/' directory for split='train' "
                           "(evaluation sets must never be used for training)")


def detect_format(path: str, first_row: dict[str, Any] | None = None) -> str:
  """Format name from the file name (then from `first_row`'s keys); DataError if undecidable."""
  name = storage.as_path(path).name.lower()
  if name.endswith(".parquet"):
    return "verl"
  for keyword, fmt in (("aime", "problem_answer"), ("minerva", "minerva"), ("olympiad", "olympiadbench"),
                       ("gsm8k", "gsm8k")):
    if keyword in name:
      return fmt
  keys = set(first_row or {})
  if "prompt" in keys and "reward_model" in keys:
    return "verl"
  if "final_answer" in keys:
    return "olympiadbench"
  if {"problem", "answer"} <= keys:
    return "problem_answer"
  if {"problem", "solution"} <= keys:
    return "minerva"
  if {"question", "answer"} <= keys:
    return "gsm8k"
  raise DataError(f"{path}: cannot detect the format from the name or columns {sorted(keys)}: "
                  f"expected {_EXPECTED_COLUMNS} (or pass fmt=)")


def _text(row: dict, field: str) -> str:
  if field not in row or row[field] is None:
    raise _RowError(field, "missing")
  value = row[field]
  if not isinstance(value, str):
    raise _RowError(field, f"expected a string, got {type(value).__name__}")
  if not value.strip():
    raise _RowError(field, "empty")
  return value


def _answer(value: str | None, field: str) -> str:
  if value is None or not value.strip():
    raise _RowError(field, "no answer could be extracted")
  return value.strip()


def _verl_prompt(row: dict) -> str:
  messages = row.get("prompt")
  if messages is None:
    raise _RowError("prompt", "missing")
  if not isinstance(messages, (list, tuple)):
    raise _RowError("prompt", f"expected a chat message list, got {type(messages).__name__}")
  user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
  if not user:
    raise _RowError("prompt", "no user message")
  content = user[-1].get("content")
  if not isinstance(content, str) or not content.strip():
    raise _RowError("prompt", "user message content empty or not a string")
  return content


def _verl_ground_truth(row: dict) -> str:
  reward_model = row.get("reward_model")
  if not isinstance(reward_model, dict):
    raise _RowError("reward_model", "missing or not a struct")
  gt = reward_model.get("ground_truth")
  if isinstance(gt, dict):
    solution = gt.get("solution")
    gt = gt.get("target")
    field = "reward_model.ground_truth.target"
    if (gt is None or (isinstance(gt, str) and not gt.strip())) and isinstance(solution, str):
      gt = gold_from_math_solution(solution)  # some MATH rows have an empty target but a boxed solution
  else:
    field = "reward_model.ground_truth"
  if isinstance(gt, bool) or gt is None:
    raise _RowError(field, "missing")
  if isinstance(gt, (int, float)):
    gt = str(gt)
  if not isinstance(gt, str):
    raise _RowError(field, f"expected a string, got {type(gt).__name__}")
  return _answer(gt, field)


def _row_to_example(row: dict, fmt: str, index: int, data_source: str | None) -> Example:
  if not isinstance(row, dict):
    raise _RowError("<row>", f"expected an object, got {type(row).__name__}")
  if fmt == "verl":
    prompt, gt = _verl_prompt(row), _verl_ground_truth(row)
    source = data_source or _text(row, "data_source")
  elif fmt == "problem_answer":
    prompt = _text(row, "problem")
    answer = row.get("answer")
    gt = _answer(str(answer) if isinstance(answer, (int, str)) and not isinstance(answer, bool) else None,
                 "answer")
  elif fmt == "minerva":
    prompt, gt = _text(row, "problem"), _answer(gold_from_math_solution(_text(row, "solution")), "solution")
  elif fmt == "olympiadbench":
    prompt = _text(row, "question")
    if row.get("final_answer") is None:
      raise _RowError("final_answer", "missing")
    gt = _answer(gold_from_olympiad_final_answer(row["final_answer"]), "final_answer")
  elif fmt == "gsm8k":
    prompt, gt = _text(row, "question"), _answer(gold_from_gsm8k_answer(_text(row, "answer")), "answer")
  else:
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
  if fmt != "verl":
    source = data_source or _JSONL_SOURCE_NAMES[fmt]
  return Example(prompt=prompt, ground_truth=gt, data_source=source, index=index)


def _iter_jsonl(path: str) -> Iterator[tuple[int, Any]]:
  """(row number, parsed object or _RowError) per non-blank line."""
  with storage.as_path(path).open("rb") as f:  # a local file or a gs:// object, streamed
    row = 0
    for raw in f:
      if not raw.strip():
        continue
      try:
        yield row, json.loads(raw.decode("utf-8"))
      except UnicodeDecodeError as err:
        yield row, _RowError("<line>", f"not valid UTF-8 ({err.reason} at byte {err.start})")
      except ValueError as err:
        yield row, _RowError("<line>", f"invalid JSON ({err})")
      row += 1


def _iter_parquet(path: str) -> Iterator[tuple[int, Any]]:
  import pyarrow.parquet as pq
  try:
    with storage.as_path(path).open("rb") as f:
      table = pq.read_table(f)
  except Exception as err:  # noqa: BLE001 - arrow raises several types for corrupt files
    raise DataError(f"{path}: cannot read parquet: {err}") from err
  for batch in table.to_batches(max_chunksize=1024):
    for row in batch.to_pylist():
      yield row


def read_examples(path: str, *, split: str | None = None, fmt: str | None = None,
                  data_source: str | None = None, on_error: str = "raise",
                  limit: int | None = None) -> tuple[list[Example], ReadStats]:
  """Read and normalise a problem file (see module docstring).

  Args:
    path: a .parquet (verl) or .jsonl file.
    split: "train" refuses eval files; anything else is informational.
    fmt: one of FORMATS to skip auto-detection.
    data_source: overrides every row's data source.
    on_error: "raise" (DataError on the first bad row) or "skip" (count it in the stats).
    limit: stop after this many valid examples.
  Returns: (examples in file order, ReadStats).
  """
  if on_error not in ("raise", "skip"):
    raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
  if fmt is not None and fmt not in FORMATS:
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
  check_split(path, split)
  try:
    found = storage.isfile(path)
  except Exception as err:  # noqa: BLE001 - unreachable bucket, no credentials: one line
    raise DataError(f"{path}: cannot read from bucket {storage.bucket_of(path)} ({type(err).__name__}: "
                    f"{str(err)[:200]}): check the URL, network and credentials") from err
  if not found:
    raise DataError(f"{path}: no such file")
  is_parquet = path.lower().endswith(".parquet")
  rows = (enumerate(_iter_parquet(path)) if is_parquet else _iter_jsonl(path))
  examples: list[Example] = []
  stats = ReadStats(path=path, fmt=fmt or "")
  for row_number, row in rows:
    stats.num_rows += 1
    try:
      if isinstance(row, _RowError):
        raise row
      if not stats.fmt:  # from the first usable row; a row of no known schema is a bad row
        try:
          stats.fmt = detect_format(path, row if isinstance(row, dict) else None)
        except DataError:
          columns = sorted(row) if isinstance(row, dict) else type(row).__name__
          raise _RowError("<columns>", f"cannot detect the format from the columns {columns}: "
                                       f"expected {_EXPECTED_COLUMNS}") from None
      example = _row_to_example(row, stats.fmt, row_number, data_source)
      examples.append(dataclasses.replace(example, path=path))
    except _RowError as err:
      message = f"{path}: row {row_number}: field '{err.field}': {err}"
      if on_error == "raise":
        raise DataError(message) from None
      stats.num_skipped += 1
      if len(stats.errors) < _MAX_REPORTED_ERRORS:
        stats.errors.append(message)
    if limit is not None and len(examples) >= limit:
      break
  if stats.num_rows == 0:
    raise DataError(f"{path}: file has no rows")
  if not examples:
    raise DataError(f"{path}: no valid rows left ({stats.num_skipped} skipped; first: {stats.errors[:1]})")
  stats.num_examples = len(examples)
  if stats.num_skipped:
    log.warning("%s: skipped %d of %d rows (data.on_bad_row='skip'); first: %s", path, stats.num_skipped,
                stats.num_rows, stats.errors[0])
  return examples, stats


def read_many(paths: list[str], **kwargs) -> tuple[list[Example], list[ReadStats]]:
  """`read_examples` over several files, concatenated; Example.index stays the per-file row number."""
  for path in paths:  # fail fast, before reading anything, if any path is an eval file for training
    check_split(path, kwargs.get("split"))
  examples, all_stats = [], []
  for path in paths:
    file_examples, stats = read_examples(path, **kwargs)
    examples.extend(file_examples)
    all_stats.append(stats)
  return examples, all_stats
