"""Report figures (matplotlib, Agg backend, PNG): pass@k curves, rank-1..5 probability bars, Lambda(n)
over training steps. Each function writes one file and returns its path; nothing is shown on screen.

Inputs are plain dicts/lists (no JAX), so this module stays on floor 1 and is safe in headless jobs.
"""

from __future__ import annotations

import io
import json
import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simko_jax import storage  # noqa: E402


def _save(fig, path: str) -> str:
  """PNG bytes rendered in memory, then one atomic write (a local path or a gs:// URL)."""
  storage.makedirs(storage.as_path(path).parent)
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, dpi=120, format="png")
  plt.close(fig)
  storage.write_atomic(path, buf.getvalue())
  return path


def plot_pass_at_k(curves: Mapping[str, Mapping[str, Mapping]], path: str, *,
                   title: str = "pass@k") -> str:
  """pass@k (%) vs k on a log2 x axis: one panel per benchmark, one line per run.

  curves: {panel (benchmark or "average"): {run: {k (str or int): pass@k in [0, 1]}}}.
  """
  panels = list(curves)
  cols = min(3, len(panels))
  rows = math.ceil(len(panels) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
  for ax, panel in zip(axes.flat, panels):
    for run, points in curves[panel].items():
      by_k = sorted((int(k), 100.0 * float(v)) for k, v in points.items())
      ax.plot([k for k, _ in by_k], [v for _, v in by_k], marker="o", markersize=3, label=run)
    ax.set_xscale("log", base=2)
    all_ks = sorted({int(k) for points in curves[panel].values() for k in points})
    ax.set_xticks(all_ks, [str(k) for k in all_ks], fontsize=8 if len(all_ks) <= 10 else 6)
    ax.minorticks_off()
    ax.set_ylim(0, min(105.0, max(5.0, ax.get_ylim()[1])))  # percentages: never below 0
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k (%)")
    ax.set_title(panel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  fig.suptitle(title)
  return _save(fig, path)


def plot_rank_probs(rank_probs: Mapping[str, Mapping[str, float]], path: str, *,
                    title: str = "Mean probability of the rank-1..5 candidates", num_ranks: int = 5) -> str:
  """Grouped bars: x = rank 1..num_ranks, one bar per checkpoint (its "rank{r}_prob" values)."""
  runs = list(rank_probs)
  width = 0.8 / max(len(runs), 1)
  x = np.arange(1, num_ranks + 1)
  fig, ax = plt.subplots(figsize=(1.4 * num_ranks + 2, 3.8))
  for i, run in enumerate(runs):
    values = [float(rank_probs[run].get(f"rank{r}_prob", np.nan)) for r in x]
    bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, values, width, label=run)
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
  ax.set_xticks(x, [f"rank {r}" for r in x])
  ax.set_xlabel("candidate rank")
  ax.set_ylabel("mean probability")
  ax.set_ylim(0, 1.05)
  ax.set_title(title)
  ax.legend()
  return _save(fig, path)


def read_metrics_jsonl(path: str) -> list[dict]:
  """The trainer's metrics JSONL: one JSON object per line with "step"; malformed lines are skipped."""
  rows = []
  with storage.as_path(path).open("r") as f:
    for line in f:
      try:
        row = json.loads(line)
      except ValueError:
        continue
      if isinstance(row, dict) and "step" in row:
        rows.append(row)
  return rows


def plot_lambda_over_steps(runs: Mapping[str, Sequence[dict]], path: str, *,
                           keys: Sequence[str] = ("lambda_1", "lambda_2", "lambda_3"),
                           title: str = "Concentration Lambda(n) during training") -> str:
  """One panel per key (Lambda(1), Lambda(2), ...), x = training step, one line per run.

  runs: {run: metric rows (dicts with "step" and the keys; rows missing a key are skipped)}.
  """
  keys = [k for k in keys if any(k in row for rows in runs.values() for row in rows)] or list(keys)
  fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.6), squeeze=False)
  for ax, key in zip(axes.flat, keys):
    for run, rows in runs.items():
      pts = sorted((row["step"], row[key]) for row in rows if key in row)
      if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=run)
    label = key.replace("lambda_", "Lambda(") + ")" if key.startswith("lambda_") else key
    ax.set_title(label)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{label} (mean log-prob)" if key.startswith("lambda") else key)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title)
  return _save(fig, path)
