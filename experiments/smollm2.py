"""Study 2: GRPO vs SimKO on SmolLM2-135M-Instruct with the embedded default task (2 CPU cores).

Each method is the embedded default run (`configs/default.py` / `configs/default_grpo.py`) trained by the
library's own trainer (`simko_jax.train.loop.run`: resumable checkpoints, metrics.jsonl with Lambda(n)
and rank-1..5 probabilities every step, held-out pass@k before and after) for the study's step count,
plus a concentration probe of the policy before and after (`concentration_analysis`). Settings:
`configs/experiments/smollm2.py`. Written to --out (default experiments/results/smollm2/):
<method>/ (the trainer's run folder), concentration.json, metrics.jsonl, table.md, pass_at_k.png,
lambda_steps.png, rank_probs.png, RESULTS.md.

  python experiments/smollm2.py                   # the study (about 25-30 min per method, idle machine)
  python experiments/smollm2.py --methods simko   # one method
  python experiments/smollm2.py --quick           # smoke mode (the trainer's runlocal sizes)

Interrupted? Rerun the same command: a finished method is skipped, an unfinished one resumes from its
newest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import study  # noqa: E402  (sets HF_HUB_OFFLINE / JAX_PLATFORMS before jax loads)

LABELS = {"grpo": "GRPO", "simko": "SimKO"}


def method_config(c, name: str, out: str, quick: bool):
  """The library config of one method: its embedded default config with the study's overrides."""
  from simko_jax.config import apply_runlocal, validate
  cfg = _get_config(os.path.join(study.ROOT, c.methods[name]))
  cfg.seed = int(c.seed)
  cfg.train.steps = int(c.train_steps)
  cfg.eval.num_problems = int(c.eval_problems)
  cfg.eval.num_samples = int(c.eval_samples)
  cfg.checkpoint.every = max(1, int(c.train_steps) // 6)   # resumable every ~1/6 of the run
  cfg.checkpoint.keep = 1
  if quick:
    cfg.runlocal = True
    apply_runlocal(cfg)
  cfg.out_dir = os.path.join(out, name)
  return validate(cfg)


def _get_config(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location("method_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def probe(model, tokenizer, cfg, c) -> dict:
  from simko_jax.eval.concentration import concentration_analysis
  from simko_jax.train import tasks
  examples = tasks.held_out_examples(cfg.data, cfg.seed, c.probe.num_prompts)
  return concentration_analysis(model, tokenizer, examples, c.probe, seed=cfg.seed, chat=True,
                                system_prompt=cfg.data.system_prompt,
                                max_prompt_len=cfg.data.max_prompt_len)


def run_method(c, name, out, quick, log) -> dict:
  """Trains (or resumes, or skips when finished) one method; returns its summary record."""
  from simko_jax.train import loop
  from simko_jax.train.checkpoint import load_policy
  from experiments.common import config_hash
  cfg = method_config(c, name, out, quick)
  key = config_hash(cfg, c.probe)
  done_path = os.path.join(out, f"{name}.json")
  if os.path.isfile(done_path):
    with open(done_path) as f:
      record = json.load(f)
    if record.get("config_hash") == key:
      log(f"[{name}] finished earlier with the same config; reusing {done_path}")
      return record
  if not os.path.isdir(os.path.join(cfg.out_dir, "checkpoints")):
    shutil.rmtree(cfg.out_dir, ignore_errors=True)   # a fresh start: no stale metrics lines
  start = time.time()
  log(f"[{name}] training {cfg.train.steps} steps with {c.methods[name]} -> {cfg.out_dir}")
  loop.run(cfg)
  train_s = time.time() - start
  model, tokenizer = load_policy(cfg.out_dir)
  after = probe(model, tokenizer, cfg, c)
  if not c.keep_checkpoints:
    shutil.rmtree(os.path.join(cfg.out_dir, "checkpoints"), ignore_errors=True)
  with open(os.path.join(cfg.out_dir, "eval_before.json")) as f:
    before_eval = json.load(f)
  with open(os.path.join(cfg.out_dir, "eval_after.json")) as f:
    after_eval = json.load(f)
  from simko_jax.metrics.plots import read_metrics_jsonl
  record = {"name": name, "config": c.methods[name], "config_hash": key, "seed": cfg.seed,
            "steps": cfg.train.steps, "rollout": f"{cfg.rollout.prompts_per_step} prompts x "
            f"{cfg.rollout.group_size} rollouts (temperature {cfg.rollout.temperature}, "
            f"{cfg.rollout.max_new_tokens} new tokens, lr {cfg.optim.learning_rate})",
            "eval_protocol": f"{cfg.eval.num_problems} held-out problems x {cfg.eval.num_samples} "
            f"samples at temperature {cfg.eval.temperature}, top-p {cfg.eval.top_p}, "
            f"{cfg.eval.max_new_tokens} new tokens", "eval_before": before_eval, "eval_after": after_eval,
            "probe_after": after, "train": read_metrics_jsonl(os.path.join(cfg.out_dir, "metrics.jsonl")),
            "wall_s": round(time.time() - start, 1), "train_and_eval_s": round(train_s, 1)}
  with open(done_path, "w") as f:
    json.dump(record, f, indent=1)
  log(f"[{name}] done in {record['wall_s']:.0f} s: pass@1 {after_eval['pass@k']['1']:.3f}, "
      f"pass@{cfg.eval.num_samples} {after_eval['pass@k'][str(cfg.eval.num_samples)]:.3f}")
  return record


def write(out, c, base_probe, records, meta):
  from simko_jax.metrics import plots
  ks = sorted(records[0]["eval_before"]["pass@k"], key=int)
  with open(os.path.join(out, "metrics.jsonl"), "w") as f:
    f.write(json.dumps({"kind": "probe", "run": "base", **base_probe}) + "\n")
    for r in records:
      for row in r["train"]:
        f.write(json.dumps({"kind": "train", "run": r["name"], **row}) + "\n")
      for tag in ("before", "after"):
        f.write(json.dumps({"kind": "eval", "run": r["name"], "tag": tag, **r[f"eval_{tag}"]}) + "\n")
      f.write(json.dumps({"kind": "probe", "run": r["name"], **r["probe_after"]}) + "\n")
  head = ["run", *[f"pass@{k}" for k in ks], "mean tokens", "truncated", "Lambda(1)", "Lambda(2)",
          "Lambda(3)", "rank-1 prob", "rank-2 prob"]
  rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

  def row(label, ev, pr):
    return "| " + " | ".join(
        [label, *[f"{100 * ev['pass@k'][k]:.1f}" for k in ks], f"{ev['mean_response_tokens']:.1f}",
         f"{100 * ev['truncated_frac']:.0f} %", f"{pr['lambda_1']:.3f}", f"{pr['lambda_2']:.2f}",
         f"{pr['lambda_3']:.2f}", f"{pr['rank1_prob']:.3f}", f"{pr['rank2_prob']:.3f}"]) + " |"
  rows.append(row("SmolLM2-135M-Instruct (before)", records[0]["eval_before"], base_probe))
  for r in records:
    rows.append(row(f"{LABELS.get(r['name'], r['name'])}, {r['steps']} steps", r["eval_after"],
                    r["probe_after"]))
  table = "\n".join(rows)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table + "\n")
  curves = {"held-out arithmetic": {"base": records[0]["eval_before"]["pass@k"]}}
  for r in records:
    curves["held-out arithmetic"][LABELS.get(r["name"], r["name"])] = r["eval_after"]["pass@k"]
  plots.plot_pass_at_k(curves, os.path.join(out, "pass_at_k.png"), title="pass@k before / after RL")
  plots.plot_lambda_over_steps({LABELS.get(r["name"], r["name"]): r["train"] for r in records},
                               os.path.join(out, "lambda_steps.png"))
  plots.plot_rank_probs({"base": base_probe, **{LABELS.get(r["name"], r["name"]): r["probe_after"]
                                               for r in records}}, os.path.join(out, "rank_probs.png"))
  same_before = len({json.dumps(r["eval_before"]["pass@k"], sort_keys=True) for r in records}) == 1
  from experiments.reporting import findings
  text = [
      "# Study 2: GRPO vs SimKO on SmolLM2-135M-Instruct (embedded default task, CPU)", "",
      "Written by `experiments/smollm2.py`; every number below comes from `metrics.jsonl` in this folder.",
      "", "## Setup", "",
      f"- Command: `python {meta['command']}` (config `configs/experiments/smollm2.py`); JAX "
      f"{meta['jax']}; {meta['machine']}.",
      f"- Wall time of the invocation that wrote these files: {meta['wall_s'] / 60:.1f} min; per method "
      "as recorded when it ran: " + ", ".join(f"{LABELS.get(r['name'], r['name'])} "
                                               f"{r['wall_s'] / 60:.1f} min" for r in records) + ".",
      f"- Seed {c.seed} for every method (same prompts, same evaluation draws).",
      "- Each method is the embedded default run (`" + "`, `".join(c.methods[r["name"]] for r in records)
      + f"`) for {records[0]['steps']} RL steps of {records[0]['rollout']}, run by the library's "
      "trainer (`simko_jax.train.loop.run`)" + (" in its smoke sizes (`runlocal`)" if meta["quick"]
                                                else "") + ".",
      f"- Evaluation: {records[0]['eval_protocol']}, before and after (unbiased pass@k). "
      "Concentration probe: "
      f"{c.probe.num_prompts} held-out prompts x {c.probe.num_samples} samples at temperature "
      f"{c.probe.temperature}, teacher-forced Lambda(n) / rank-n probabilities over all response tokens.",
      f"- The 'before' evaluation is run by each method's trainer; identical across methods: {same_before}.",
      "", "## Results", "", table, "", "![pass@k](pass_at_k.png)", "",
      "![Lambda over steps](lambda_steps.png)", "", "![rank probabilities](rank_probs.png)", "",
      "## Findings", "", findings("smollm2" + ("_quick" if meta["quick"] else "")), ""]
  with open(os.path.join(out, "RESULTS.md"), "w") as f:
    f.write("\n".join(text))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default=os.path.join(study.ROOT, "configs/experiments/smollm2.py"))
  p.add_argument("--out", default=None)
  p.add_argument("--methods", default=None, help="comma-separated subset (default: all)")
  p.add_argument("--steps", type=int, default=None, help="RL steps per method (default: the config's)")
  p.add_argument("--quick", action="store_true")
  args = p.parse_args(argv)
  c = study.load_config(args.config, args.quick)
  if args.steps:
    c.train_steps = args.steps
  out = args.out or os.path.join(study.ROOT, "experiments/results/smollm2" + ("_quick" if args.quick else ""))
  os.makedirs(out, exist_ok=True)
  names = [m.strip() for m in args.methods.split(",")] if args.methods else list(c.methods)
  log = lambda msg: print(msg, flush=True)
  start = time.time()
  from simko_jax.train.checkpoint import load_policy
  from experiments.common import config_hash
  base_path = os.path.join(out, "base_probe.json")
  first = method_config(c, names[0], out, args.quick)
  key = config_hash(first.model, first.data, first.seed, c.probe)
  base_probe = None
  if os.path.isfile(base_path):
    with open(base_path) as f:
      base_probe = json.load(f)
    base_probe = base_probe if base_probe.pop("config_hash", None) == key else None
  if base_probe is None:
    log(f"[base] concentration probe of {first.model.checkpoint}")
    model, tokenizer = load_policy(first.model.checkpoint)
    base_probe = probe(model, tokenizer, first, c)
    del model
    with open(base_path, "w") as f:
      json.dump({"config_hash": key, **base_probe}, f, indent=1)
  records = [run_method(c, name, out, args.quick, log) for name in names]
  meta = {"wall_s": time.time() - start, "quick": args.quick,
          "command": " ".join([os.path.relpath(sys.argv[0], study.ROOT)] + sys.argv[1:]),
          "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                     f"load average at the end {os.getloadavg()[0]:.1f}",
          "jax": __import__("jax").__version__}
  write(out, c, base_probe, records, meta)
  log(f"[done] {len(records)} methods in {meta['wall_s'] / 60:.1f} min; results in {out}")


if __name__ == "__main__":
  main()
