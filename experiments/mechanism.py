"""Study 1: the over-concentration mechanism at CPU scale (GRPO vs SimKO vs PSR vs NSR).

A ~0.9M-parameter transformer is trained from scratch on compact Countdown by the supervised warm-up
(`simko_jax.train.sft`), then each RL method runs from that same warm start with several seeds. Written
to --out (default experiments/results/mechanism/): metrics.jsonl, table.md, pass_at_k.png,
concentration_steps.png, rank_probs.png and RESULTS.md.

  python experiments/mechanism.py                 # the committed study (3 seeds per method)
  python experiments/mechanism.py --quick         # smoke mode (~2 min)
  python experiments/mechanism.py --seeds 0 --runs grpo,simko --out /tmp/m
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import study  # noqa: E402  (sets HF_HUB_OFFLINE / JAX_PLATFORMS before jax loads)

LABELS = {"grpo": "GRPO", "simko": "SimKO", "psr": "PSR", "nsr": "NSR"}


def observations(base, groups, ks) -> list[str]:
  """Plain statements computed from the numbers (no interpretation)."""
  from experiments.reporting import spread
  top = ks[-1]
  b1, bk = base["eval"]["pass@k"]["1"], base["eval"]["pass@k"][top]
  conc = base["eval"]["concentration"]["expr"]
  lines = [f"- Warm start: pass@1 {100 * b1:.1f} %, pass@{top} {100 * bk:.1f} %; expression tokens: "
           f"Lambda(1) {conc['lambda_1']:.3f}, Lambda(2) {conc['lambda_2']:.2f}, rank-1 probability "
           f"{conc['rank1_prob']:.3f}."]
  for name, rs in groups.items():
    d1 = spread([100 * (r["after"]["pass@k"]["1"] - b1) for r in rs])
    dk = spread([100 * (r["after"]["pass@k"][top] - bk) for r in rs])
    l2 = spread([r["after"]["concentration"]["expr"]["lambda_2"] for r in rs])
    lines.append(f"- {LABELS.get(name, name)}: pass@1 {d1[0]:+.1f} ± {d1[1]:.1f} points, "
                 f"pass@{top} {dk[0]:+.1f} ± {dk[1]:.1f} points vs the warm start; Lambda(2) expr "
                 f"{l2[0]:.2f} ± {l2[1]:.2f}.")
  if "grpo" in groups and "simko" in groups:
    for k in ("1", top):
      g = [r["after"]["pass@k"][k] for r in groups["grpo"]]
      s = [r["after"]["pass@k"][k] for r in groups["simko"]]
      diff = [100 * (a - b) for a, b in zip(s, g)]
      m, sd = spread(diff)
      lines.append(f"- SimKO minus GRPO at pass@{k}, paired by seed: {m:+.1f} ± {sd:.1f} points "
                   f"(per seed: {', '.join(f'{d:+.1f}' for d in diff)}).")
    wins = sum(spread([r["after"]["pass@k"][k] for r in groups["simko"]])[0] >
               spread([r["after"]["pass@k"][k] for r in groups["grpo"]])[0] for k in ks)
    lines.append(f"- SimKO's mean pass@k is above GRPO's at {wins} of the {len(ks)} k values.")
  return lines


def write(out, cfg, base, records, meta):
  from experiments import reporting as rep
  groups = rep.group(records)
  groups = {n: groups[n] for n in sorted(groups, key=lambda n: (list(LABELS).index(n)
                                                              if n in LABELS else len(LABELS), n))}
  ks = rep.ks_of(base)
  meta["run_wall_s"] = sum(r["wall_s"] for r in records)
  meta["num_runs"] = len(records)
  meta["loads"] = [r["load_avg_1min"] for r in records if "load_avg_1min" in r]
  rep.write_metrics_jsonl(out, base, records, meta)
  table = rep.results_table(base, groups, ks, LABELS)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table + "\n")
  n = len(meta["seeds"])
  rep.plot_pass_at_k(base, groups, os.path.join(out, "pass_at_k.png"),
                     f"Countdown, held-out pass@k after RL from one warm start ({n} seed"
                     f"{'s' if n > 1 else ''}: mean, min..max band)", LABELS)
  band = f"mean, min..max band over {n} seed{'s' if n > 1 else ''}"
  rep.plot_steps(groups, os.path.join(out, "concentration_steps.png"),
                 f"Concentration on the probe set, expression tokens, over RL steps ({band})", "expr",
                 LABELS)
  rep.plot_steps(groups, os.path.join(out, "concentration_steps_all_tokens.png"),
                 f"Concentration on the probe set, all response tokens, over RL steps ({band})", "all",
                 LABELS)
  rep.plot_steps(groups, os.path.join(out, "training_rollouts.png"),
                 f"Library metrics of the training rollouts (all tokens), over RL steps ({band})",
                 "train", LABELS)
  rep.plot_rank_bars(base, groups, os.path.join(out, "rank_probs.png"),
                     "Mean probability of the rank-1..5 candidates after RL (probe set)", LABELS)
  text = [
      "# Study 1: over-concentration at CPU scale (GRPO vs SimKO vs PSR vs NSR)", "",
      "Written by `experiments/mechanism.py`; every number below comes from `metrics.jsonl` in this "
      "folder. Rerunning the command with the same seeds reproduces them.", "",
      "## Setup", "", *rep.setup_lines(cfg, meta),
      "- Methods: " + "; ".join(f"{LABELS.get(k, k)} = `{dict(cfg.methods[k])}`" for k in groups)
      + " (library `algo` fields).", "",
      "## Results", "",
      f"pass@k in % on the held-out problems after {cfg.rl.train.steps} RL steps (mean ± sample std "
      "over seeds); Lambda(n) and the rank-1 probability on the probe set after training.", "",
      table, "",
      "![pass@k](pass_at_k.png)", "",
      "![concentration over steps](concentration_steps.png)", "",
      "Same on all response tokens: [concentration_steps_all_tokens.png]"
      "(concentration_steps_all_tokens.png); on the training rollouts (the trainer's own metrics): "
      "[training_rollouts.png](training_rollouts.png).", "",
      "![rank probabilities](rank_probs.png)", "",
      "## Observations (computed by the script)", "", *observations(base, groups, ks), "",
      "## Findings", "", rep.findings("mechanism" + ("_quick" if meta["quick"] else "")), ""]
  with open(os.path.join(out, "RESULTS.md"), "w") as f:
    f.write("\n".join(text))


def main(argv=None):
  args = study.parse_args("configs/experiments/mechanism.py", "experiments/results/mechanism", argv)
  study.run_study(args, lambda cfg: {k: dict(v) for k, v in cfg.methods.items()}, write)


if __name__ == "__main__":
  main()
