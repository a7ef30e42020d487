"""Bad training data through the trainer's own path (`config.data` -> tasks.train_examples ->
PromptPipeline, as in build_run) and through the CLI: one clear message naming file, row and field
(`data.on_bad_row='fail'`, `data.overlong_prompts='fail'`), or skipped and counted ('skip' / 'drop');
never a bare traceback."""

import json
import logging

import pytest

from simko_jax.config import default_config
from simko_jax.data.pipeline import PipelineConfig, PromptPipeline, tokenize_prompt
from simko_jax.data.sources import DataError
from simko_jax.models.char_tokenizer import CharTokenizer
from simko_jax.train import tasks
from tests.faults import harness

GOOD = {"problem": "What is 1 + 1?", "answer": "2"}
LONG = {"problem": "x" * 500, "answer": "1"}


def _write(path, rows) -> str:
  with open(path, "wb") as f:
    for row in rows:
      f.write(row if isinstance(row, bytes) else (json.dumps(row) + "\n").encode())
  return str(path)


def _prepare(path, on_bad_row="fail", overlong="drop", max_prompt_len=96):
  """What build_run does with `config.data`: read the files, then tokenise and filter."""
  cfg = default_config()
  cfg.data.task, cfg.data.train_files, cfg.data.on_bad_row = "files", path, on_bad_row
  examples = tasks.train_examples(cfg.data, 0)
  return PromptPipeline(examples, CharTokenizer(), PipelineConfig(
      num_prompts=2, max_prompt_len=max_prompt_len, overlong="drop" if overlong == "drop" else "error"))


BAD_FILES = {  # name: (rows, message after "<path>: ")
    "empty_file": ([b"\n"], "file has no rows"),
    "wrong_schema": ([{"text": "hi", "label": 1}], "row 0: field '<columns>': cannot detect the "
                     "format from the columns ['label', 'text']: expected verl parquet"),
    "schema_changes_midway": ([GOOD, {"question": "Q?", "answer": "#### 3"}],
                              "row 1: field 'problem': missing"),
    "missing_answer": ([GOOD, GOOD, {"problem": "What is 2 + 2?"}],
                       "row 2: field 'answer': no answer could be extracted"),
    "non_utf8_text": ([GOOD, b'{"problem": "caf\xe9", "answer": "1"}\n'],
                      "row 1: field '<line>': not valid UTF-8"),
    "invalid_json": ([GOOD, b"{oops\n"], "row 1: field '<line>': invalid JSON"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_gives_one_message_with_file_row_and_field(tmp_path, name):
  rows, message = BAD_FILES[name]
  path = _write(tmp_path / "train.jsonl", rows)
  with pytest.raises(DataError) as err:
    _prepare(path)
  assert str(err.value).startswith(f"{path}: {message}"), str(err.value)


def test_bad_rows_are_skipped_and_counted_with_skip(tmp_path, caplog):
  path = _write(tmp_path / "train.jsonl",
                [GOOD, {"problem": "No answer"}, b"\xff\xfe\n", GOOD, {"problem": "3+3?", "answer": 6}])
  with caplog.at_level(logging.WARNING):
    pipeline = _prepare(path, on_bad_row="skip")
  assert pipeline.num_examples == 3
  assert f"{path}: skipped 2 of 5 rows (data.on_bad_row='skip'); first: {path}: row 1: field " \
         "'answer'" in caplog.text


def test_overlong_prompt_is_dropped_and_counted_or_refused(tmp_path):
  path = _write(tmp_path / "train.jsonl", [GOOD, LONG, GOOD])
  pipeline = _prepare(path)
  assert (pipeline.num_examples, pipeline.num_dropped) == (2, 1)
  with pytest.raises(DataError) as err:
    _prepare(path, overlong="fail")
  tokens = len(tokenize_prompt(CharTokenizer(), LONG["problem"]))
  assert str(err.value) == (
      f"{path}: row 1: field 'prompt': example 1 has {tokens} tokens > max_prompt_len=96; raise "
      "config.data.max_prompt_len or set config.data.overlong_prompts='drop' to skip (and count) "
      "such prompts")


def test_nothing_left_after_filtering(tmp_path):
  path = _write(tmp_path / "train.jsonl", [LONG, LONG])
  with pytest.raises(DataError, match=r"no examples left after dropping 2 prompts longer than "
                                      r"max_prompt_len=96; raise config.data.max_prompt_len"):
    _prepare(path)
  path = _write(tmp_path / "bad.jsonl", [GOOD | {"answer": None}, {"problem": "b"}])
  with pytest.raises(DataError, match=rf"{path}: no valid rows left \(2 skipped; first: .*row 0: "
                                      r"field 'answer'"):
    _prepare(path, on_bad_row="skip")


def test_cli_bad_row_fails_fast_with_one_line(tmp_path):
  path = _write(tmp_path / "train.jsonl", [GOOD, {"problem": "What is 2 + 2?"}])
  rc, text = harness.run(tmp_path / "run", **{"data.task": "files", "data.train_files": path})
  assert rc == 1 and "Traceback" not in text, text[-3000:]
  assert text.strip().splitlines()[-1] == (
      f"error: {path}: row 1: field 'answer': no answer could be extracted")
  assert not (tmp_path / "run").exists()  # refused before anything was built or written


def test_cli_skip_and_drop_are_counted_and_the_run_starts(tmp_path, cache_dir):
  path = _write(tmp_path / "train.jsonl",
                [GOOD, {"problem": "No answer"}, b"\xff\n", LONG, GOOD, GOOD, GOOD])
  out = tmp_path / "run"
  rc, text = harness.run(out, 0, cache_dir=cache_dir, **{
      "data.task": "files", "data.train_files": path, "data.on_bad_row": "skip"})
  assert rc == 0, text[-3000:]
  assert f"{path}: skipped 2 of 7 rows (data.on_bad_row='skip')" in text
  assert "data: 1 prompts longer than config.data.max_prompt_len = 96 dropped; 4 kept" in \
      (out / "events.log").read_text()
