"""Compare evaluation runs (e.g. base vs GRPO vs SimKO): one Markdown table and the figures.

  python -m simko_jax.report --runs base=runs/eval_base,grpo=runs/eval_grpo,simko=runs/eval_simko \
      --out reports/cmp [--ks 1,4,16,64,256] [--train_metrics grpo=runs/grpo/metrics.jsonl,...]

Each run directory is an `evaluate` output dir (results.json; concentration.json when the
concentration analysis ran). Writes into --out:
  report.md         the comparison table (`eval.tables.results_table`) and links to the figures
  pass_at_k.png     pass@k vs k (log2 x), one panel per benchmark + the average, one line per run
  rank_probs.png    rank-1..5 candidate probabilities, grouped bars per run (runs with concentration.json)
  lambda_steps.png  Lambda(1..3) over training steps (--train_metrics: the trainer's metrics.jsonl
                    files, or run directories holding one)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Mapping, Sequence

from simko_jax import storage
from simko_jax.eval.tables import results_table
from simko_jax.metrics import plots


def parse_named_paths(spec: str) -> dict[str, str]:
  """"a=path1,b=path2" -> {"a": "path1", "b": "path2"} (a bare path is named by its basename)."""
  out = {}
  for item in (s.strip() for s in (spec or "").split(",")):
    if not item:
      continue
    if "=" in item:
      name, _, path = item.partition("=")
    else:
      name, path = storage.as_path(item).name, item
    if name in out:
      raise ValueError(f"run name {name!r} given twice")
    out[name] = path
  return out


def load_run(eval_dir: str) -> dict:
  """results.json of an eval dir, with "concentration" added when concentration.json exists."""
  path = storage.join(eval_dir, "results.json")
  if not storage.isfile(path):
    raise FileNotFoundError(f"{path} not found: is {eval_dir!r} an evaluate output directory?")
  results = _read_json(path)
  if not isinstance(results, dict) or not isinstance(results.get("benchmarks"), dict):
    raise ValueError(f"{path} has no 'benchmarks' table: is {eval_dir!r} an evaluate output directory?")
  conc = storage.join(eval_dir, "concentration.json")
  if storage.isfile(conc):
    results["concentration"] = _read_json(conc)
  return results


def _read_json(path) -> object:
  """JSON of a local path or gs:// URL; ValueError naming the file when it is damaged."""
  try:
    return json.loads(storage.read_text(path))
  except json.JSONDecodeError as err:
    raise ValueError(f"{path} is damaged ({err}): rerun the evaluation that wrote it (it resumes)") from err


def pass_at_k_curves(runs: Mapping[str, dict]) -> dict[str, dict[str, dict]]:
  """{panel: {run: {k: pass@k}}}: one panel per benchmark (in first-seen order), then "average"."""
  curves: dict[str, dict[str, dict]] = {}
  for run, res in runs.items():
    for bench, metrics in res["benchmarks"].items():
      curves.setdefault(bench, {})[run] = metrics["pass@k"]
  if len(curves) > 1:
    for run, res in runs.items():
      if res.get("average"):
        curves.setdefault("average", {})[run] = res["average"]["pass@k"]
  return curves


def write_report(runs: Mapping[str, dict], out_dir: str, *, ks: Sequence[int] | None = None,
                 train_metrics: Mapping[str, Sequence[dict]] | None = None, title: str = "") -> dict:
  """Write report.md and the figures for loaded runs ({name: results}); returns {artifact: path}."""
  storage.makedirs(out_dir)  # a local directory or a gs:// URL
  at = lambda name: str(storage.join(out_dir, name))
  written = {"pass_at_k": plots.plot_pass_at_k(pass_at_k_curves(runs), at("pass_at_k.png"),
                                               title=title or "pass@k vs k: " + " vs ".join(runs))}
  conc = {run: res["concentration"] for run, res in runs.items() if res.get("concentration")}
  if conc:
    written["rank_probs"] = plots.plot_rank_probs(conc, at("rank_probs.png"))
  if train_metrics:
    written["lambda_steps"] = plots.plot_lambda_over_steps(train_metrics,
                                                           at("lambda_steps.png"))
  lines = [f"# {title or 'Evaluation report'}", "", "pass@k / maj@k in %; avg = unweighted mean over "
           "benchmarks; avg6 = the SimKO paper's six benchmarks (without GSM8K).", "",
           results_table(runs, ks), ""]
  if conc:
    lines += ["## Concentration (teacher-forced on own samples)", "",
              "| run | " + " | ".join([f"rank{r}" for r in range(1, 6)] + ["Lambda(1)", "Lambda(2)",
                                                                            "Lambda(3)"]) + " |",
              "|" + "---|" * 9]
    for run, c in conc.items():
      cells = [f"{c.get(f'rank{r}_prob', float('nan')):.3f}" for r in range(1, 6)]
      cells += [f"{c.get(f'lambda_{r}', float('nan')):.2f}" for r in range(1, 4)]
      lines.append(f"| {run} | " + " | ".join(cells) + " |")
    lines.append("")
  lines += [f"![{name}]({storage.as_path(path).name})" for name, path in written.items()]
  written["report"] = at("report.md")
  storage.write_atomic(written["report"], "\n".join(lines) + "\n")
  return written


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, not a usage dump
    sys.exit(f"error: {message} (see python -m simko_jax.report --help)")


def main(argv: Sequence[str] | None = None) -> dict:
  """CLI entry (module doc). Bad input (unknown flag, missing or damaged run dir, unwritable --out)
  ends in one `error: ...` line and exit status 1."""
  parser = _Parser(prog="python -m simko_jax.report", description=__doc__.split("\n")[0])
  parser.add_argument("--runs", required=True, help="name=eval_dir,name=eval_dir,...")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--ks", default="", help="table k values, e.g. 1,4,16,256 (default: auto)")
  parser.add_argument("--train_metrics", default="", help="name=metrics.jsonl,... (Lambda over steps)")
  parser.add_argument("--title", default="")
  args = parser.parse_args(argv)
  try:
    return _run(args)
  except (ValueError, KeyError, OSError) as err:  # json.JSONDecodeError is a ValueError; StorageError an OSError
    sys.exit(f"error: {type(err).__name__}: {err}" if isinstance(err, KeyError) else f"error: {err}")


def _run(args) -> dict:
  runs = {name: load_run(path) for name, path in parse_named_paths(args.runs).items()}
  if not runs:
    raise ValueError("--runs names no evaluation directory: give name=eval_dir,...")
  metrics = {}
  for name, path in parse_named_paths(args.train_metrics).items():
    metrics[name] = plots.read_metrics_jsonl(
        storage.join(path, "metrics.jsonl") if storage.isdir(path) else path)
  try:
    ks = [int(k) for k in args.ks.split(",") if k.strip()] or None
  except ValueError as err:
    raise ValueError(f"--ks {args.ks!r} is not a comma-separated list of integers") from err
  storage.check_writable(args.out, what="--out")
  written = write_report(runs, args.out, ks=ks, train_metrics=metrics or None, title=args.title)
  print(storage.read_text(written["report"]))
  return written


if __name__ == "__main__":
  main()
