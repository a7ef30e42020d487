"""Results files of a CPU study: metrics.jsonl, table.md, PNG figures and RESULTS.md.

Inputs are the plain dicts `experiments.study` collects: `base` (the warm start's evaluation) and one
record per (run, seed) with per-step training metrics ("train") and the final evaluation ("after").
Spread over seeds is shown as mean +- sample std in tables and as a min..max band in figures.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simko_jax.metrics.plots import plot_rank_probs  # noqa: E402

CONC_COLUMNS = (("lambda_1", 3), ("lambda_2", 2), ("lambda_3", 2), ("rank1_prob", 3))
FINDINGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "findings")


def group(records: Sequence[dict]) -> dict[str, list[dict]]:
  out: dict[str, list[dict]] = {}
  for r in records:
    out.setdefault(r["name"], []).append(r)
  return {k: sorted(v, key=lambda r: r["seed"]) for k, v in out.items()}


def ks_of(base: dict) -> list[str]:
  return sorted(base["eval"]["pass@k"], key=int)


def spread(values: Sequence[float]) -> tuple[float, float]:
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
  mean, std = spread([scale * x for x in values])
  return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(values) > 1 else "")


def final_train(record: dict, key: str, last: int = 5) -> float:
  rows = [r[key] for r in record["train"][-last:] if key in r]
  return float(np.mean(rows)) if rows else float("nan")


def write_metrics_jsonl(out: str, base: dict, records: Sequence[dict], meta: dict) -> None:
  with open(os.path.join(out, "metrics.jsonl"), "w") as f:
    f.write(json.dumps({"kind": "warm_start", **meta["warm_start"]}) + "\n")
    f.write(json.dumps({"kind": "eval", "run": "base", "seed": None, **base["eval"]}) + "\n")
    for r in records:
      for row in r["train"]:
        f.write(json.dumps({"kind": "train", "run": r["name"], "seed": r["seed"], **row}) + "\n")
      f.write(json.dumps({"kind": "eval", "run": r["name"], "seed": r["seed"], "method": r["method"],
                          "train_s": r["train_s"], "wall_s": r["wall_s"], **r["after"]}) + "\n")


def results_table(base: dict, groups: Mapping[str, list[dict]], ks: Sequence[str],
                  label: Mapping[str, str] | None = None) -> str:
  """pass@k (%) after training (mean ± std over seeds); concentration on the probe set after training
  (Lambda(n) and rank-1 probability over the expression tokens, Lambda(2) over all response tokens);
  the training reward of the last 5 steps."""
  label = label or {}
  head = (["run", "seeds"] + [f"pass@{k}" for k in ks] +
          ["Lambda(1) expr", "Lambda(2) expr", "Lambda(3) expr", "rank-1 prob expr",
           "Lambda(2) all", "train reward (last 5 steps)"])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  conc = base["eval"]["concentration"]
  lines.append("| " + " | ".join(
      ["warm start (before RL)", "-"] + [f"{100 * base['eval']['pass@k'][k]:.1f}" for k in ks] +
      [f"{conc['expr'][key]:.{d}f}" for key, d in CONC_COLUMNS] + [f"{conc['all']['lambda_2']:.2f}", "-"])
      + " |")
  for name, rs in groups.items():
    cells = [label.get(name, name), ",".join(str(r["seed"]) for r in rs)]
    cells += [fmt([r["after"]["pass@k"][k] for r in rs], 100.0) for k in ks]
    cells += [fmt([r["after"]["concentration"]["expr"][key] for r in rs], 1.0, d)
              for key, d in CONC_COLUMNS]
    cells.append(fmt([r["after"]["concentration"]["all"]["lambda_2"] for r in rs], 1.0, 2))
    cells.append(fmt([final_train(r, "reward_mean") for r in rs], 1.0, 3))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _band(ax, x, ys, label, **kw):
  ys = np.asarray(ys, np.float64)
  line, = ax.plot(x, ys.mean(0), label=label, **kw)
  if len(ys) > 1:
    ax.fill_between(x, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.15)
  return line


def plot_pass_at_k(base: dict, groups: Mapping[str, list[dict]], path: str, title: str,
                   label: Mapping[str, str] | None = None) -> str:
  """Left: pass@k vs k; right: pass@k minus the warm start's. Lines: mean; bands: min..max over seeds."""
  label = label or {}
  ks = ks_of(base)
  x = [int(k) for k in ks]
  b = np.asarray([100 * base["eval"]["pass@k"][k] for k in ks])
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
  ax1.plot(x, b, "k--", marker="o", markersize=3, label="warm start")
  ax2.axhline(0.0, color="k", ls="--", lw=1)
  for name, rs in groups.items():
    ys = [[100 * r["after"]["pass@k"][k] for k in ks] for r in rs]
    _band(ax1, x, ys, label.get(name, name), marker="o", markersize=3)
    _band(ax2, x, [np.asarray(y) - b for y in ys], label.get(name, name), marker="o", markersize=3)
  for ax, ylabel in ((ax1, "pass@k (%)"), (ax2, "pass@k - warm start (points)")):
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(k) for k in x], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def rows_of(record: dict, source: str) -> list[dict]:
  """Per-step metric rows of a run: "train" (the library's metrics of each step's training rollouts,
  all tokens) or "expr" / "all" (the probe set, expression tokens / all response tokens)."""
  if source == "train":
    return record["train"]
  return [{"step": p["step"], **p[source]} for p in record["probes"]]


def plot_steps(groups: Mapping[str, list[dict]], path: str, title: str, source: str,
               label: Mapping[str, str] | None = None) -> str:
  """Lambda(1..3), Lambda_sample and the training reward (top row), rank-1..5 probabilities (bottom
  row) over RL steps; mean over seeds with a min..max band."""
  label = label or {}
  top = ("lambda_1", "lambda_2", "lambda_3", "lambda_sample", "reward_mean")
  bottom = ("rank1_prob", "rank2_prob", "rank3_prob", "rank4_prob", "rank5_prob")
  names = {"lambda_1": "Lambda(1)", "lambda_2": "Lambda(2)", "lambda_3": "Lambda(3)",
           "lambda_sample": "Lambda(sampled token)", "reward_mean": "training reward"}
  fig, axes = plt.subplots(2, 5, figsize=(20, 7))
  for ax, key in zip(list(axes[0]) + list(axes[1]), top + bottom):
    src = "train" if key == "reward_mean" else source
    for name, rs in groups.items():
      rows = [rows_of(r, src) for r in rs]
      _band(ax, [row["step"] for row in rows[0]], [[row.get(key, np.nan) for row in rr] for rr in rows],
            label.get(name, name))
    ax.set_title(names.get(key, key.replace("rank", "rank-").replace("_prob", " probability")))
    ax.set_xlabel("RL step")
    ax.grid(True, alpha=0.3)
  axes[0][0].legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_rank_bars(base: dict, groups: Mapping[str, list[dict]], path: str, title: str,
                   label: Mapping[str, str] | None = None) -> str:
  label = label or {}
  probs = {"warm start": base["eval"]["concentration"]["expr"]}
  for name, rs in groups.items():
    probs[label.get(name, name)] = {f"rank{i}_prob": float(np.mean(
        [r["after"]["concentration"]["expr"][f"rank{i}_prob"] for r in rs])) for i in range(1, 6)}
  return plot_rank_probs(probs, path, title=title)


def findings(study: str) -> str:
  path = os.path.join(FINDINGS_DIR, f"{study}.md")
  if not os.path.isfile(path):
    return "_No hand-written findings yet (`experiments/findings/%s.md`)._" % study
  with open(path) as f:
    return f.read().strip()


def _overlap_line(cfg) -> str:
  from experiments import task
  tcfg = task.task_config(cfg.task)
  distinct, seen = task.content_overlap(tcfg, task.held_out_examples(tcfg, cfg.eval.num_problems))
  return (f"Evaluation problems are held out by index, not by content: the {task.TRAIN_SIZE:,} "
          f"training indices hold only {distinct:,} distinct problems, and {seen} of the "
          f"{cfg.eval.num_problems} evaluation problems also occur among them (so pass@k here measures "
          "how RL reshapes the policy on the training distribution, not generalisation).")


def setup_lines(cfg, meta: dict) -> list[str]:
  w, rl, e = meta["warm_start"], cfg.rl, cfg.eval
  m = cfg.model
  total_run_s = meta.get("run_wall_s", 0.0)
  return [
      f"- Command: `python {meta['command']}` (config `{meta['config']}`); JAX {meta['jax']}; "
      f"{meta['machine']}.",
      f"- Wall time, as recorded when each piece ran: warm start {w['wall_s'] / 60:.1f} min (trained "
      f"once, cached), RL + evaluation {total_run_s / 60:.1f} min summed over the "
      f"{meta.get('num_runs', '?')} runs ({total_run_s / max(meta.get('num_runs', 1), 1):.0f} s per run); "
      f"total {(w['wall_s'] + total_run_s) / 60:.1f} min. The invocation that wrote these files took "
      f"{meta['wall_s'] / 60:.1f} min (finished runs are reused, not recomputed)." + (
          f" Load average (1 min) at the end of the runs: {min(meta['loads']):.1f} to "
          f"{max(meta['loads']):.1f} on {os.cpu_count()} cores (other jobs shared the machine; "
          "an idle one is faster)." if meta.get("loads") else ""),
      f"- Seeds: {', '.join(str(s) for s in meta['seeds'])} (the RL seed: prompt order, rollout "
      "sampling; the warm start and the evaluation draws are the same for every run).",
      f"- Task: Countdown with {cfg.task.num_numbers} numbers in [1, {cfg.task.max_number}] "
      "(the library generator, `simko_jax.data.countdown`), compact prompt `3 7 4 -> 25`, answer "
      "`\\boxed{3*7+4}` checked by the library's countdown verifier. " + _overlap_line(cfg),
      f"- Policy: Llama-style transformer from scratch, {w['num_params']:,} parameters "
      f"({m.num_layers} layers, width {m.hidden_size}, {m.num_heads} heads, MLP "
      f"{m.intermediate_size}), character tokenizer.",
      f"- Warm start (`simko_jax.train.sft`): {cfg.sft.steps} steps x {cfg.sft.batch_size} "
      f"(problem, random correct left-to-right solution) pairs, lr {cfg.sft.learning_rate}; "
      f"loss {w['loss_first_50']:.3f} -> {w['loss_last_50']:.3f}. Cached in `warm_start.npz`.",
      f"- RL (library trainer pieces, `train.loop.iteration`): {rl.train.steps} steps x "
      f"{rl.rollout.prompts_per_step} prompts x {rl.rollout.group_size} rollouts at temperature "
      f"{rl.rollout.temperature}, {rl.rollout.prompts_per_step // rl.algo.mini_batch_prompts} "
      f"AdamW updates per step (lr {rl.optim.learning_rate}, clip {rl.algo.clip_low}), "
      f"max {rl.rollout.max_new_tokens} new tokens, no KL, token-mean loss.",
      f"- Evaluation: {e.num_problems} held-out problems x {e.num_samples} samples at temperature "
      f"{e.temperature}, top-p {e.top_p} (the paper's protocol); unbiased pass@k "
      f"(`simko_jax.metrics.pass_at_k`). Concentration (Lambda(n), rank-n probabilities; "
      f"`simko_jax.metrics.concentration`): teacher-forced on {e.probe_samples} own samples at "
      f"temperature {e.probe_temperature} for each of the first {e.probe_problems} held-out problems "
      f"(every {e.probe_every} RL steps), over the expression tokens inside `\\boxed{{}}` (\"expr\": "
      "where the choices are made) and over all response tokens (\"all\": the fixed format "
      "characters are near-deterministic and dilute these averages); the library's own per-step "
      "metrics of the training rollouts (all tokens) are in `metrics.jsonl` too.",
  ]
