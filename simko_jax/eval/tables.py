"""Markdown tables of evaluation results: one row per (benchmark, run), plus averages.

Input: {run_name: results} where results is what `evaluate` returns / writes to results.json.
Values are percentages with one decimal, as in the SimKO paper's tables.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def _fmt(x) -> str:
  return "-" if x is None else f"{100.0 * float(x):.1f}"


def default_table_ks(runs: Mapping[str, dict]) -> list[int]:
  """pass@1 plus 4, 16, 64, 256 and the largest n, where every run has them."""
  shared = None
  for res in runs.values():
    for metrics in res["benchmarks"].values():
      ks = {int(k) for k in metrics["pass@k"]}
      shared = ks if shared is None else shared & ks
  shared = shared or {1}
  wanted = {1, 4, 16, 64, 256, max(shared)}
  return sorted(k for k in shared if k in wanted)


def results_table(runs: Mapping[str, dict], ks: Sequence[int] | None = None, *,
                  maj_k: int | None = None) -> str:
  """A Markdown table: columns pass@k for `ks` (default `default_table_ks`), maj@maj_k (default the
  largest k), mean response tokens and truncated %. Rows: every benchmark of every run, then
  "avg" (all benchmarks of the run) and "avg6" (the paper's six benchmarks) when it covers at least two
  benchmarks and differs from "avg"."""
  ks = list(ks) if ks else default_table_ks(runs)
  maj_k = maj_k or ks[-1]
  header = (["benchmark", "run", "problems", "n"] + [f"pass@{k}" for k in ks] + [f"maj@{maj_k}"]
            + ["mean tokens", "truncated %"])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  benchmarks: list[str] = []
  for res in runs.values():
    benchmarks += [b for b in res["benchmarks"] if b not in benchmarks]

  def row(label, run, metrics, problems, n):
    cells = [label, run, str(problems), str(n)]
    cells += [_fmt(metrics.get("pass@k", {}).get(str(k))) for k in ks]
    cells.append(_fmt(metrics.get("maj@k", {}).get(str(maj_k))))
    tokens = metrics.get("mean_response_tokens")
    cells += ["-" if tokens is None else f"{tokens:.1f}", _fmt(metrics.get("truncated_frac"))]
    return "| " + " | ".join(cells) + " |"

  for bench in benchmarks:
    for run, res in runs.items():
      if bench in res["benchmarks"]:
        m = res["benchmarks"][bench]
        lines.append(row(bench, run, m, m["num_problems"], m["num_samples"]))
  for key, label in (("average", "avg"), ("paper_average", "avg6")):
    for run, res in runs.items():
      avg = res.get(key) or {}
      same_as_avg = avg.get("benchmarks") == res.get("average", {}).get("benchmarks")
      if not avg or (key == "paper_average" and (len(avg["benchmarks"]) < 2 or same_as_avg)):
        continue
      lines.append(row(f"**{label}** ({len(avg['benchmarks'])})", run, avg, "-", "-"))
  return "\n".join(lines)
