"""Readers on the real shared files (read in place) and on small malformed files in tmp_path."""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simko_jax.data.sources import (DataError, EvalSplitError, Example, detect_format, read_examples,
                                    read_many)

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
DATA = os.path.abspath(DATA) if os.path.isdir(DATA) else "/work/shared/data"

# file, rows, skipped (rows with no usable answer anywhere), first ground truth, data source of row 0
REAL_FILES = [
    ("eval/aime24.jsonl", 30, 0, "204", "aime24"),
    ("eval/aime25.parquet", 30, 0, "70", "TianHongZXY/AIME2025"),
    ("eval/amc23.parquet", 40, 0, "27", "TianHongZXY/amc23"),
    ("eval/gsm8k_test.jsonl", 1319, 0, "18", "gsm8k"),
    ("eval/math500.parquet", 500, 0, "17", "simplelr_abel"),
    ("eval/math_test5000.parquet", 5000, 0, "2", "TianHongZXY/MATH"),
    ("eval/minerva_math.jsonl", 272, 0, "1.6", "minerva"),
    ("eval/olympiadbench.jsonl", 675, 0, "2", "olympiadbench"),
    ("train/gsm8k_level1_train.parquet", 8388, 0, "180", "simplelr_abel"),
    ("train/math_train.parquet", 7500, 2, "0", "TianHongZXY/MATH"),
]


@pytest.mark.parametrize("rel, rows, skipped, first_gt, source", REAL_FILES)
def test_real_files(rel, rows, skipped, first_gt, source):
  split = "train" if rel.startswith("train/") else "eval"
  examples, stats = read_examples(os.path.join(DATA, rel), split=split, on_error="skip")
  assert (stats.num_rows, stats.num_skipped, len(examples)) == (rows, skipped, rows - skipped)
  assert examples[0].ground_truth == first_gt and examples[0].data_source == source
  assert all(isinstance(e, Example) and e.prompt.strip() and e.ground_truth.strip() for e in examples)
  assert len({e.index for e in examples}) == len(examples)


def test_real_file_details():
  math_train = os.path.join(DATA, "train/math_train.parquet")
  expected = r"math_train.parquet: row 5341: field 'reward_model.ground_truth.target'"
  with pytest.raises(DataError, match=expected):
    read_examples(math_train, split="train")
  examples, _ = read_examples(math_train, split="train", on_error="skip")
  by_row = {e.index: e for e in examples}
  assert by_row[6627].ground_truth == "\\mbox{four}"  # empty target -> boxed answer of the solution
  olymp, _ = read_examples(os.path.join(DATA, "eval/olympiadbench.jsonl"))
  assert any(", " in e.ground_truth for e in olymp)  # multi-answer lists joined
  few, _ = read_examples(os.path.join(DATA, "eval/math500.parquet"), limit=3, data_source="math500")
  assert len(few) == 3 and {e.data_source for e in few} == {"math500"}


def test_training_refuses_eval_files(tmp_path):
  for rel in ("eval/aime24.jsonl", "eval/math500.parquet"):
    with pytest.raises(EvalSplitError, match="refusing to read a file under an 'eval/' directory"):
      read_examples(os.path.join(DATA, rel), split="train")
  with pytest.raises(EvalSplitError):
    read_many([os.path.join(DATA, "train/math_train.parquet"), os.path.join(DATA, "eval/aime24.jsonl")],
              split="train", on_error="skip")
  path = tmp_path / "evaluation_like.jsonl"  # 'eval' must be a directory component, not a substring
  path.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
  assert len(read_examples(str(path), split="train", fmt="problem_answer")[0]) == 1


def _write_jsonl(path, rows):
  with open(path, "wb") as f:
    for row in rows:
      f.write(row if isinstance(row, bytes) else json.dumps(row).encode() + b"\n")


GOOD = {"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}
BAD_ROWS = [
    ({"answer": "#### 4"}, "question", "missing"),
    ({"question": 7, "answer": "#### 4"}, "question", "expected a string"),
    ({"question": "   ", "answer": "#### 4"}, "question", "empty"),
    ({"question": "Q?", "answer": "no marker"}, "answer", "no answer"),
    (b"\xff\xfe{\"question\": 1}\n", "<line>", "UTF-8"),
    (b"{not json\n", "<line>", "invalid JSON"),
]


@pytest.mark.parametrize("bad, field, why", BAD_ROWS)
def test_bad_jsonl_row_raises_or_skips(tmp_path, bad, field, why):
  path = tmp_path / "my_gsm8k.jsonl"
  _write_jsonl(path, [GOOD, bad, GOOD])
  with pytest.raises(DataError) as err:
    read_examples(str(path))
  message = str(err.value)
  assert str(path) in message and "row 1" in message and f"field '{field}'" in message and why in message
  examples, stats = read_examples(str(path), on_error="skip")
  assert [e.index for e in examples] == [0, 2] and stats.num_skipped == 1 and "row 1" in stats.errors[0]


def test_empty_and_all_bad_files(tmp_path):
  empty = tmp_path / "empty_gsm8k.jsonl"
  empty.write_text("\n")
  with pytest.raises(DataError, match="no rows"):
    read_examples(str(empty))
  bad = tmp_path / "bad_gsm8k.jsonl"
  _write_jsonl(bad, [{"question": "Q", "answer": "none"}] * 2)
  with pytest.raises(DataError, match="no valid rows left"):
    read_examples(str(bad), on_error="skip")
  with pytest.raises(DataError, match="no such file"):
    read_examples(str(tmp_path / "missing.jsonl"))


def test_format_detection(tmp_path):
  assert detect_format("x/aime24.jsonl") == "problem_answer"
  assert detect_format("x/data.jsonl", {"question": "q", "final_answer": ["1"]}) == "olympiadbench"
  assert detect_format("x/data.jsonl", {"problem": "q", "solution": "s"}) == "minerva"
  with pytest.raises(DataError, match="cannot detect"):
    detect_format("x/data.jsonl", {"foo": 1})
  path = tmp_path / "custom.jsonl"
  _write_jsonl(path, [{"problem": "P?", "solution": "so \\boxed{\\frac{1}{2}}."}])
  examples, stats = read_examples(str(path))
  assert stats.fmt == "minerva" and examples[0].ground_truth == "\\frac{1}{2}"
  examples, _ = read_examples(str(path), fmt="minerva", data_source="math")
  assert examples[0].data_source == "math"


def test_verl_parquet_variants(tmp_path):
  def row(prompt, gt, source="src"):
    return {"prompt": prompt, "reward_model": {"ground_truth": gt, "style": "rule"}, "data_source": source}
  user = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "What is 1+1?"}]
  path = tmp_path / "string_gt.parquet"
  pq.write_table(pa.Table.from_pylist([row(user, "2"), row(user, "  "), row([], "3"),
                                       row([{"role": "user", "content": ""}], "3")]), path)
  examples, stats = read_examples(str(path), on_error="skip")
  assert [(e.prompt, e.ground_truth, e.data_source) for e in examples] == [("What is 1+1?", "2", "src")]
  assert stats.num_skipped == 3
  assert "field 'reward_model.ground_truth'" in stats.errors[0] and "field 'prompt'" in stats.errors[1]
  path = tmp_path / "struct_gt.parquet"
  pq.write_table(pa.Table.from_pylist([row(user, {"question": "q", "target": "\\frac{1}{2}"})]), path)
  assert read_examples(str(path))[0][0].ground_truth == "\\frac{1}{2}"
  corrupt = tmp_path / "corrupt.parquet"
  corrupt.write_bytes(b"PAR1 not really")
  with pytest.raises(DataError, match="cannot read parquet"):
    read_examples(str(corrupt))


def test_real_ground_truths_survive_boxed_extraction():
  """Every eval gold, boxed in a response, is extracted back verbatim (nested braces, \\{ \\} sets...)."""
  from simko_jax.rewards.extract import last_boxed_content
  known_malformed = {"90{square", "\\frac{\\}{p}i4+2-\\sqrt{2}"}  # unbalanced braces in the source data
  checked = 0
  for rel in ("eval/math_test5000.parquet", "eval/olympiadbench.jsonl", "eval/minerva_math.jsonl",
              "eval/amc23.parquet", "eval/aime24.jsonl"):
    for example in read_examples(os.path.join(DATA, rel), on_error="skip")[0]:
      gold = example.ground_truth
      if gold in known_malformed:
        continue
      assert last_boxed_content(f"so the answer is $\\boxed{{{gold}}}$.") == gold.strip(), gold
      checked += 1
  assert checked > 5900
