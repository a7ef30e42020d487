"""docs/paper_fidelity.md is the single record of the paper runs' settings: every "ours" value in its
table must be what the four paper configs (and configs/eval_default.py) set, and every training / eval
sampling field must have a row, so neither the configs nor the page can drift."""

import ast
import os
import re

import pytest

from configs import eval_default, paper_llama32_3b_simko
from configs import paper_qwen25_math7b_simko
from configs.paper_llama32_3b_grpo import get_config as llama_grpo
from configs.paper_llama32_3b_simko import get_config as llama_simko
from configs.paper_qwen25_math7b_grpo import get_config as qwen_grpo
from configs.paper_qwen25_math7b_simko import get_config as qwen_simko
from simko_jax.config import default_config, validate
from simko_jax.data import prompts
from simko_jax.eval.config import default_eval_config, validate_eval_config
from simko_jax.eval.harness import SAMPLING_FIELDS

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "paper_fidelity.md")
RUNS = {"qwen_simko": qwen_simko, "qwen_grpo": qwen_grpo, "llama_simko": llama_simko,
        "llama_grpo": llama_grpo}
NAMES = {"PAPER_SYSTEM_PROMPT": prompts.PAPER_SYSTEM_PROMPT, "PAPER_PROMPT_SUFFIX": prompts.PAPER_PROMPT_SUFFIX,
         "MATH_TRAIN": paper_qwen25_math7b_simko.MATH_TRAIN,
         "GSM8K_LEVEL1_TRAIN": paper_llama32_3b_simko.GSM8K_LEVEL1_TRAIN,
         "PAPER_SAMPLES_BY_BENCHMARK": eval_default.PAPER_SAMPLES_BY_BENCHMARK}
TRAIN_SECTIONS = ("data.", "rollout.", "algo.", "optim.")
TRAIN_EXTRA = {"seed", "train.steps", "model.dtype", "model.param_dtype", "rewards.math_extraction",
               "rewards.truncated_is_wrong", "eval.enabled"}
EVAL_FIELDS = set(SAMPLING_FIELDS) | {"benchmarks", "num_samples_by_benchmark", "ks", "math_extraction",
                                      "truncated_is_wrong"}
# Hardware / bookkeeping fields a paper config may change without a row (they change no number).
NOT_SETTINGS = ("out_dir", "model.checkpoint", "model.remat", "model.attention_impl", "train.mesh_",
                "checkpoint.", "target.", "rewards.num_workers")


def _cells(line):
  return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def table_rows():
  """[{setting, field, paper, authors, ours, same, why}] from the page's one table."""
  lines = open(DOC).read().splitlines()
  start = next(i for i, l in enumerate(lines) if l.startswith("| setting | field |"))
  rows = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    cells = _cells(line)
    assert len(cells) == 7, line
    rows.append(dict(zip(("setting", "field", "paper", "authors", "ours", "same", "why"), cells)))
  return rows


def _literal(text):
  text = text.strip()
  assert text.startswith("`") and text.endswith("`"), text
  text = text[1:-1]
  return NAMES[text] if text in NAMES else ast.literal_eval(text)


def per_run(cell, parse):
  """'`v`' -> the same value for every run; 'key: v; key: v' -> {run: value}, each run matched once."""
  if ":" not in cell.split("`")[0]:
    return {run: parse(cell) for run in RUNS}
  out = {}
  for part in cell.split(";"):
    key, value = (s.strip() for s in part.split(":", 1))
    matched = [run for run in RUNS if key == run or key in run.split("_")]
    assert matched, f"unknown run key {key!r} in {cell!r}"
    for run in matched:
      assert run not in out, f"{run} matched twice in {cell!r}"
      out[run] = parse(value)
  assert set(out) == set(RUNS), f"{cell!r} does not cover every run"
  return out


def _get(cfg, field):
  for part in field.split("."):
    cfg = cfg[part]
  return cfg


ROWS = table_rows()
FIELD_ROWS = [r for r in ROWS if r["field"] != "—"]


def test_table_is_well_formed():
  assert len(ROWS) >= 70
  for row in ROWS:
    same = per_run(row["same"], lambda s: s.strip())
    assert set(same.values()) <= {"yes", "no", "n/a"}, row
    if "no" in same.values() or row["field"] == "—":
      assert row["why"], f"row {row['setting']!r}: a difference (or a non-field row) needs its why"
    assert row["paper"] and row["authors"], row
  fields = [r["field"] for r in FIELD_ROWS]
  assert len(fields) == len(set(fields)), "a field has two rows"


@pytest.mark.parametrize("row", [r for r in FIELD_ROWS if not r["field"].startswith("`eval:")],
                         ids=lambda r: r["field"])
def test_training_configs_match_the_table(row):
  field = row["field"].strip("`")
  want = per_run(row["ours"], _literal)
  for run, get_config in RUNS.items():
    got = _get(get_config(), field)
    assert got == want[run] and type(got) is type(want[run]), f"{run}: config.{field} = {got!r}, table {want[run]!r}"


@pytest.mark.parametrize("row", [r for r in FIELD_ROWS if r["field"].startswith("`eval:")],
                         ids=lambda r: r["field"])
def test_paper_eval_config_matches_the_table(row):
  field = row["field"].strip("`").removeprefix("eval:")
  got, want = eval_default.get_config()[field], _literal(row["ours"])
  assert got == want and type(got) is type(want), f"eval config.{field} = {got!r}, table {want!r}"


def test_every_setting_has_a_row():
  documented = {r["field"].strip("`") for r in FIELD_ROWS}
  train = {k for k in _flat(default_config()) if k.startswith(TRAIN_SECTIONS)} | TRAIN_EXTRA
  assert not train - documented, f"training fields without a row: {sorted(train - documented)}"
  evals = {f"eval:{f}" for f in EVAL_FIELDS}
  assert not evals - documented, f"eval fields without a row: {sorted(evals - documented)}"
  known = set(_flat(default_config())) | {f"eval:{k}" for k in _flat(default_eval_config())}
  assert not documented - known, f"rows for fields that do not exist: {sorted(documented - known)}"


@pytest.mark.parametrize("run", RUNS)
def test_no_undocumented_change_from_the_defaults(run):
  """A paper config may only change a documented setting (or a hardware / bookkeeping field)."""
  cfg, base = _flat(RUNS[run]()), _flat(default_config())
  documented = {r["field"].strip("`") for r in FIELD_ROWS}
  changed = {k for k, v in cfg.items() if v != base[k] and not k.startswith(NOT_SETTINGS)}
  assert not changed - documented, f"{run} changes undocumented fields {sorted(changed - documented)}"
  validate(RUNS[run]())


def test_eval_config_is_valid_and_changes_only_documented_fields():
  cfg = eval_default.get_config()
  validate_eval_config(cfg)
  base, flat = _flat(default_eval_config()), _flat(cfg)
  changed = {f"eval:{k}" for k, v in flat.items() if v != base[k] and k != "out_dir"}
  assert changed <= {r["field"].strip("`") for r in FIELD_ROWS}


def _flat(cfg, prefix=""):
  out = {}
  for key, value in cfg.items():
    if hasattr(value, "items"):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out
