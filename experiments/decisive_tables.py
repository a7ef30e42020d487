"""Study 4's report from metrics.jsonl alone: table.md, pass_at_k.png, curves.png, RESULTS.md.

`python experiments/decisive.py --report` calls `write_all`; nothing here runs a model, so the
committed figures and tables regenerate from the committed metrics with that one command.
"""

from __future__ import annotations

import json
import os

import numpy as np

from experiments.paired_bootstrap import paired_bootstrap
from experiments.seed_eval import pass_at_k_per_problem

LABELS = {"base": "warm start", "grpo": "GRPO", "simko": "SimKO"}


def load(out: str):
  """(meta, base counts [P], {method: (seeds, counts_SxP at the last evaluated step, train lists)})."""
  with open(os.path.join(out, "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  meta = next(x for x in lines if x["kind"] == "meta")
  base = np.asarray(next(x for x in lines if x["kind"] == "base")["counts"]["0"])
  methods: dict = {}
  for x in lines:
    if x["kind"] != "run":
      continue
    step = max(x["counts"], key=int)
    methods.setdefault(x["method"], []).append((x["seed"], x["counts"][step], x["train"]))
  out_methods = {}
  for name, rows in methods.items():
    rows.sort()
    out_methods[name] = ([r[0] for r in rows], np.asarray([r[1] for r in rows]), [r[2] for r in rows])
  return meta, base, out_methods


def ks_for(n: int) -> list[int]:
  ks, k = [], 1
  while k < n:
    ks.append(k)
    k *= 2
  return ks + [n]


def endpoint(a_SxP, b_SxP, n, k, resamples) -> dict:
  """a - b at pass@k in points: bootstrap mean and 95 % interval, per-seed values, their sd."""
  d = 100 * (pass_at_k_per_problem(a_SxP, n, k) - pass_at_k_per_problem(b_SxP, n, k))
  boot = paired_bootstrap(d, resamples, seed=0)
  per_seed = d.mean(1)
  return {"k": k, "mean": boot["mean"], "lo": boot["lo"], "hi": boot["hi"],
          "half_width": boot["half_width"], "per_seed": per_seed.tolist(),
          "seed_sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan")}


def summary(out: str) -> dict:
  meta, base, methods = load(out)
  n, res = meta["num_samples"], meta["bootstrap"]
  ks = ks_for(n)
  table = {"base": {k: 100 * float(pass_at_k_per_problem(base[None], n, k).mean()) for k in ks}}
  for name, (_, counts, _) in methods.items():
    per_seed = {k: 100 * pass_at_k_per_problem(counts, n, k).mean(1) for k in ks}
    table[name] = {k: (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
                   for k, v in per_seed.items()}
  ends = {}
  if "grpo" in methods and "simko" in methods:
    g, s = methods["grpo"][1], methods["simko"][1]
    assert methods["grpo"][0] == methods["simko"][0], "paired seeds differ"
    ends["simko-grpo"] = {k: endpoint(s, g, n, k, res) for k in ks}
  for name, (_, counts, _) in methods.items():
    b = np.broadcast_to(base[None], counts.shape)
    ends[f"{name}-base"] = {k: endpoint(counts, b, n, k, res) for k in (1, n)}
  return {"meta": meta, "ks": ks, "n": n, "table": table, "ends": ends, "methods": methods,
          "base": base}


def fmt_ci(e) -> str:
  return f"{e['mean']:+.1f} [{e['lo']:+.1f}, {e['hi']:+.1f}]"


def answer(sm: dict) -> str:
  """The first paragraph of RESULTS.md, from the numbers."""
  n, e = sm["n"], sm["ends"].get("simko-grpo")
  meta = sm["meta"]
  if e is None:
    return "Only one method has finished so far; no comparison yet."
  top, one = e[n], e[1]
  seeds = len(sm["methods"]["grpo"][0])
  if top["lo"] > 0:
    verdict = f"SimKO keeps more pass@{n} than GRPO"
  elif top["hi"] < 0:
    verdict = f"SimKO keeps less pass@{n} than GRPO"
  elif top["half_width"] <= 2:
    verdict = f"SimKO and GRPO do not differ at pass@{n} by more than about 2 points"
  else:
    verdict = (f"no difference between SimKO and GRPO is detected at pass@{n}; the 95 % interval "
               f"rules out effects beyond {max(-top['lo'], top['hi']):.1f} points either way, short of "
               f"the pre-registered +/- 2 points")
  gb = sm["ends"]["grpo-base"][n]
  sb = sm["ends"]["simko-base"][n]
  # the bootstrap half-width scaled as 1/sqrt(seeds) (the problem-sampling part does not shrink with
  # seeds, so this is a lower bound)
  need = int(np.ceil(seeds * (top["half_width"] / 2.0) ** 2))
  return (f"**Answer: {verdict}.** SimKO minus GRPO, paired by seed ({seeds} seeds per method, "
          f"{meta['num_problems']} held-out problems disjoint in content from training, "
          f"{meta['steps']} RL steps, {n} samples per problem), mean with 95 % paired-bootstrap "
          f"interval over seeds and problems: pass@{n} {fmt_ci(top)} points, pass@1 {fmt_ci(one)} "
          f"points. Against the warm start, GRPO changes pass@{n} by {fmt_ci(gb)} and SimKO by "
          f"{fmt_ci(sb)} points. The seed-to-seed sd of the paired pass@{n} difference is "
          f"{top['seed_sd']:.1f} points; scaling the interval as 1/sqrt(seeds), +/- 2 points needs at "
          f"least {need} seeds per method.")


def table_md(sm: dict) -> str:
  ks, t = sm["ks"], sm["table"]
  head = "| policy | seeds | " + " | ".join(f"pass@{k}" for k in ks) + " |"
  rows = [head, "|" + "---|" * (len(ks) + 2)]
  rows.append(f"| {LABELS['base']} | - | " + " | ".join(f"{t['base'][k]:.1f}" for k in ks) + " |")
  for name, (seeds, _, _) in sm["methods"].items():
    rows.append(f"| {LABELS.get(name, name)} | {len(seeds)} | "
                + " | ".join(f"{t[name][k][0]:.1f} ± {t[name][k][1]:.1f}" for k in ks) + " |")
  if "simko-grpo" in sm["ends"]:
    rows.append("| SimKO - GRPO (paired, 95 % CI) | | "
                + " | ".join(fmt_ci(sm["ends"]["simko-grpo"][k]) for k in ks) + " |")
  return "\n".join(rows)


def plot(sm: dict, out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  ks, n = sm["ks"], sm["n"]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(ks, [sm["table"]["base"][k] for k in ks], "k--", label=LABELS["base"])
  for name, (seeds, counts, _) in sm["methods"].items():
    per = np.stack([100 * pass_at_k_per_problem(counts, n, k).mean(1) for k in ks])
    ax.plot(ks, per.mean(1), marker="o", label=f"{LABELS.get(name, name)} ({len(seeds)} seeds)")
    ax.fill_between(ks, per.min(1), per.max(1), alpha=0.2)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("k")
  ax.set_ylabel("pass@k (%)")
  ax.set_title("Held-out (content-disjoint) pass@k; band: min..max over seeds", fontsize=9)
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(out, "pass_at_k.png"), dpi=120)
  plt.close(fig)

  keys = [("reward_mean", "training rollouts: pass@1 (mean reward, T = 1)"),
          ("pass_at_group", "training rollouts: pass@8 (any of the group correct)"),
          ("rank1_prob", "rank-1 probability (training rollouts)"),
          ("lambda_2", "Lambda(2) (training rollouts)")]
  fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5))
  for ax, (key, title) in zip(axes, keys):
    for name, (_, _, train) in sm["methods"].items():
      steps = [r["step"] for r in train[0]]
      vals = np.asarray([[r.get(key, np.nan) for r in t] for t in train])
      # a 5-step running mean: single steps of 16 prompts are noisy
      kernel = np.ones(5) / 5
      smooth = np.asarray([np.convolve(v, kernel, mode="valid") for v in vals])
      x = steps[len(steps) - smooth.shape[1]:]
      ax.plot(x, smooth.mean(0), label=LABELS.get(name, name))
      ax.fill_between(x, smooth.min(0), smooth.max(0), alpha=0.2)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("RL step")
  axes[0].legend()
  fig.tight_layout()
  fig.savefig(os.path.join(out, "curves.png"), dpi=110)
  plt.close(fig)


def write_all(out: str, cfg) -> None:
  sm = summary(out)
  table = table_md(sm)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table + "\n")
  plot(sm, out)
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump({"ends": sm["ends"], "table": {k: {str(kk): vv for kk, vv in v.items()}
                                             for k, v in sm["table"].items()}}, f, indent=1)
  meta, n = sm["meta"], sm["n"]
  findings = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "experiments", "findings", "decisive.md")
  text = ["# Study 4: does SimKO keep pass@K where GRPO loses it? (issue 24)", "", answer(sm), "",
          "Written by `python experiments/decisive.py --report` from `metrics.jsonl` in this folder "
          "(every number and figure below).", "", "## Setup", "",
          f"- Command: `{meta['command']}` (config `{meta['config']}`); JAX {meta['jax']}; "
          f"{meta['machine']}; wall time {meta['wall_s'] / 60:.1f} min.",
          f"- Warm start: committed `warm_start.npz` (sha256 {meta['warm_start']['npz_sha256'][:16]}..., "
          f"{meta['warm_start']['num_params']:,} parameters, SFT {meta['warm_start']['steps']} steps "
          f"on the training problems only, loss {meta['warm_start']['loss_first_50']:.3f} -> "
          f"{meta['warm_start']['loss_last_50']:.3f}).",
          f"- Split: {meta['num_problems']} evaluation problems, pairwise distinct and disjoint in "
          f"content (sorted numbers + target) from all {meta['warm_start']['split']['num_train']:,} "
          "training problems (asserted in `experiments/task.py: clean_split`).",
          f"- RL: {meta['steps']} steps, the study-1 settings (16 prompts x 8 rollouts, T = 1.0, 2 "
          "AdamW updates per step, lr 2e-4, clip 0.2, token-mean loss), all seeds of a method in one "
          "`jax.vmap`-ed program (`experiments/vmapped.py`, checked equal to the library's "
          "`train.loop.iteration` by `tests/experiments/test_vmapped.py`).",
          f"- Methods: " + "; ".join(f"{LABELS[k]} = `{dict(cfg.methods[k])}`" for k in cfg.methods) + ".",
          f"- Evaluation: {n} samples per problem at T = {cfg.eval.temperature}, top-p "
          f"{cfg.eval.top_p}, at most {cfg.eval.max_new_tokens} tokens (cut = wrong); unbiased "
          "pass@k per problem; the same draws (keys) for every policy.",
          f"- Statistics (pre-registered in `experiments/README.md`): paired bootstrap over seeds and "
          f"problems, {meta['bootstrap']} resamples, 95 % percentile interval.", "",
          "## Results", "",
          "pass@k in % (mean ± sample sd over seeds); last row: the paired difference with its 95 % "
          "interval.", "", table, "", "![pass@k](pass_at_k.png)", "",
          "Per-step metrics of the training rollouts (5-step running mean; band min..max over seeds):",
          "", "![curves](curves.png)", "", "Per-seed paired differences (SimKO - GRPO, points):", ""]
  if "simko-grpo" in sm["ends"]:
    for k in (1, n):
      e = sm["ends"]["simko-grpo"][k]
      text.append(f"- pass@{k}: " + ", ".join(f"{v:+.1f}" for v in e["per_seed"])
                  + f" (sd {e['seed_sd']:.1f})")
  text += ["", "## Findings", ""]
  if os.path.isfile(findings):
    with open(findings) as f:
      text.append(f.read())
  with open(os.path.join(out, "RESULTS.md"), "w") as f:
    f.write("\n".join(text) + "\n")
