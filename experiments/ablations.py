"""Study 3: ablations of SimKO on the mechanism study (K, alpha, tau, lambda, positive / negative part).

Every run starts from the mechanism study's cached warm start and uses its RL and evaluation settings
(`configs/experiments/ablations.py` imports `configs/experiments/mechanism.py`). Runs whose config and
seed equal a finished mechanism-study run (GRPO and default SimKO) are copied from
experiments/results/mechanism/runs/ (identical config hash) instead of recomputed; pass
--reuse_from "" to recompute them. Written to --out (default experiments/results/ablations/):
metrics.jsonl, table.md, pass_at_k.png, lambda.png, RESULTS.md.

  python experiments/ablations.py                 # 1 seed per variant (the config's seeds)
  python experiments/ablations.py --seeds 0,1,2   # more seeds
  python experiments/ablations.py --quick         # smoke mode
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import study  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MECHANISM = os.path.join(study.ROOT, "experiments", "results", "mechanism")


def plot_panels(base, groups, panels, multi, path):
  """One panel per ablated field: pass@k minus the warm start's, one line per setting, all on seed 0
  (the seed every setting has); a last panel with the settings that have several seeds (mean line,
  min..max band)."""
  from experiments.reporting import ks_of
  ks = ks_of(base)
  x = [int(k) for k in ks]
  b = np.asarray([100 * base["eval"]["pass@k"][k] for k in ks])
  delta = lambda r: np.asarray([100 * r["after"]["pass@k"][k] for k in ks]) - b
  multi = [(run, label) for run, label in multi if run in groups and len(groups[run]) > 1]
  n = len(panels) + bool(multi)
  fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 4.0), squeeze=False)
  for ax, (title, members) in zip(axes[0], panels):
    for run, label in members:
      first = [r for r in groups.get(run, []) if r["seed"] == 0]
      if first:
        ax.plot(x, delta(first[0]), marker="o", markersize=3, label=label,
                ls=":" if run == "grpo" else "-")
    ax.set_title(f"{title} (seed 0)")
  if multi:
    ax = axes[0][-1]
    for run, label in multi:
      ys = np.asarray([delta(r) for r in groups[run]])
      line, = ax.plot(x, ys.mean(0), marker="o", markersize=3, label=f"{label} ({len(ys)} seeds)",
                      ls=":" if run == "grpo" else "-")
      ax.fill_between(x, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.12)
    ax.set_title("stronger doses, several seeds")
  for ax in axes[0]:
    ax.axhline(0.0, color="k", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(k) for k in x], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k - warm start (points)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle("SimKO ablations: held-out pass@k after RL relative to the warm start")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def paired(groups, a, b, k):
  """(mean, std, per-seed list) of pass@k(a) - pass@k(b) in points over the seeds both have."""
  from experiments.reporting import spread
  seeds = sorted({r["seed"] for r in groups.get(a, [])} & {r["seed"] for r in groups.get(b, [])})
  by = lambda name, s: next(r for r in groups[name] if r["seed"] == s)["after"]["pass@k"][k]
  diff = [100 * (by(a, s) - by(b, s)) for s in seeds]
  return (*spread(diff), diff) if diff else None


def plot_lambda(base, groups, labels, path):
  """Final Lambda(1..3) and rank-1 probability on the probe set (expression tokens) per run: mean
  over seeds (dot) with the min..max range (bar); the warm start as a dashed line."""
  names = list(groups)
  keys = (("lambda_1", "Lambda(1)"), ("lambda_2", "Lambda(2)"), ("lambda_3", "Lambda(3)"),
          ("rank1_prob", "rank-1 probability"))
  fig, axes = plt.subplots(1, len(keys), figsize=(15, 0.32 * len(names) + 1.6), sharey=True)
  y = np.arange(len(names))[::-1]
  for ax, (key, title) in zip(axes, keys):
    values = [[r["after"]["concentration"]["expr"][key] for r in groups[n]] for n in names]
    mean = np.asarray([np.mean(v) for v in values])
    lo = mean - np.asarray([np.min(v) for v in values])
    hi = np.asarray([np.max(v) for v in values]) - mean
    ax.errorbar(mean, y, xerr=[lo, hi], fmt="o", markersize=4, capsize=2)
    ax.axvline(base["eval"]["concentration"]["expr"][key], color="k", ls="--", lw=1,
               label="warm start")
    ax.set_title(f"{title} after RL")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7)
  axes[0].set_yticks(y, [labels.get(n, n).split(" (K=3")[0] + (f" ({len(groups[n])} seeds)"
                                                                 if len(groups[n]) > 1 else "")
                         for n in names], fontsize=8)
  fig.suptitle("Concentration on the probe set (expression tokens) after RL: mean and min..max "
               "over seeds")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write(out, cfg, base, records, meta):
  from experiments import reporting as rep
  groups = rep.group(records)
  labels = {run: label for _, members in cfg.panels for run, label in members}
  labels.update(simko="SimKO default (K=3, alpha=0.01, tau=0.8, lambda=1.1)",
                positive_only="positive part only (lambda=1.0)",
                negative_only="negative part only (alpha=0)", grpo="GRPO")
  order = [n for n in ("grpo", "simko", "k1", "k5", "alpha0_005", "alpha0_05", "tau0_0", "tau0_6",
                       "positive_only", "lam1_3", "negative_only") if n in groups]
  order += [n for n in groups if n not in order]
  groups = {n: groups[n] for n in order}
  ks = rep.ks_of(base)
  meta["run_wall_s"] = sum(r["wall_s"] for r in records)
  meta["num_runs"] = len(records)
  meta["loads"] = [r["load_avg_1min"] for r in records if "load_avg_1min" in r]
  rep.write_metrics_jsonl(out, base, records, meta)
  table = rep.results_table(base, groups, ks, labels)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table + "\n")
  multi = [("grpo", "GRPO"), ("simko", "SimKO default"), ("alpha0_05", "alpha=0.05"),
           ("lam1_3", "lambda=1.3")]
  plot_panels(base, groups, cfg.panels, multi, os.path.join(out, "pass_at_k.png"))
  plot_lambda(base, groups, labels, os.path.join(out, "lambda.png"))
  top = ks[-1]
  obs = []
  for n, rs in groups.items():
    p1 = rep.spread([100 * r["after"]["pass@k"]["1"] for r in rs])[0]
    pk = rep.spread([100 * r["after"]["pass@k"][top] for r in rs])[0]
    s0 = [r for r in rs if r["seed"] == 0]
    extra = (f" (mean of {len(rs)} seeds; seed 0 alone: pass@1 {100 * s0[0]['after']['pass@k']['1']:.1f} %, "
             f"pass@{top} {100 * s0[0]['after']['pass@k'][top]:.1f} %, rank-1 probability "
             f"{s0[0]['after']['concentration']['expr']['rank1_prob']:.3f})" if len(rs) > 1 and s0 else "")
    obs.append(f"- {labels.get(n, n)}: pass@1 {p1:.1f} %, pass@{top} {pk:.1f} %, Lambda(2) "
               f"{np.mean([r['after']['concentration']['expr']['lambda_2'] for r in rs]):.2f}, rank-1 "
               f"probability {np.mean([r['after']['concentration']['expr']['rank1_prob'] for r in rs]):.3f}"
               f" (expression tokens){extra}.")
  for n in [n for n, _ in multi[2:] if n in groups and len(groups[n]) > 1]:
    for ref in ("grpo", "simko"):
      for k in ("1", top):
        d = paired(groups, n, ref, k)
        if d:
          obs.append(f"- {labels.get(n, n)} minus {labels.get(ref, ref)} at pass@{k}, paired by seed: "
                     f"{d[0]:+.1f} ± {d[1]:.1f} points (per seed: "
                     f"{', '.join(f'{x:+.1f}' for x in d[2])}).")
  seeds = ", ".join(str(s) for s in meta["seeds"])
  several = "; ".join(f"{labels.get(k, k)}: {', '.join(str(x) for x in v)}"
                      for k, v in meta.get("seeds_per_run", {}).items())
  text = [
      "# Study 3: SimKO ablations on the mechanism study", "",
      "Written by `experiments/ablations.py`; every number below comes from `metrics.jsonl` in this "
      "folder. Rerunning the command with the same seeds reproduces them.", "",
      "## Setup", "", *rep.setup_lines(cfg, meta),
      f"- Seeds per setting: {seeds}" + (f" ({several})" if several else "") + (
          ". With one seed, differences smaller than the seed spread measured in study 1 (a few "
          "points of pass@k) are not evidence either way." if len(meta["seeds"]) == 1 else "."),
      "- Runs identical to a study-1 run (same config hash and seed) are copied from "
      "`experiments/results/mechanism/runs/` rather than recomputed.", "",
      "## Results", "",
      f"pass@k in % after {cfg.rl.train.steps} RL steps; Lambda(n) and rank-1 probability on the "
      "probe set after training.", "", table, "",
      "![ablations: pass@k](pass_at_k.png)", "", "![ablations: Lambda](lambda.png)", "",
      "## Observations (computed by the script)", "", *obs, "",
      "## Findings", "", rep.findings("ablations" + ("_quick" if meta["quick"] else "")), ""]
  with open(os.path.join(out, "RESULTS.md"), "w") as f:
    f.write("\n".join(text))


def main(argv=None):
  args = study.parse_args("configs/experiments/ablations.py", "experiments/results/ablations", argv)
  mechanism_dir = MECHANISM + ("_quick" if args.quick else "")
  if args.warm_start is None:
    args.warm_start = mechanism_dir
  if args.reuse_from is None:
    args.reuse_from = os.path.join(mechanism_dir, "runs")
  args.reuse_from = args.reuse_from or None
  study.run_study(args, lambda cfg: {k: dict(v) for k, v in cfg.methods.items()}, write)


if __name__ == "__main__":
  main()
