"""Study 4 (issue 24): GRPO vs SimKO, many seeds (vmapped), clean evaluation set, paired bootstrap.

  python experiments/decisive.py                      # run (resumable) and write the report
  python experiments/decisive.py --report             # only regenerate tables / figures / RESULTS.md
                                                      # from the committed metrics.jsonl
  python experiments/decisive.py --methods grpo --seeds 3 --out /tmp/one   # rerun one seed
  python experiments/decisive.py --quick              # smoke mode (tiny sizes, same code paths)

Layout of --out (default experiments/results/decisive/):
  warm_start.npz / .json   the committed warm start (`decisive_setup`) and its sha256
  base.json                the warm start's evaluation (per-problem correct counts)
  seeds/<method>.json      one method's vmapped run: per-seed, per-step trainer metrics and the
                           per-problem correct counts at every evaluation step (reused when the
                           config hash matches: resumable per method)
  metrics.jsonl            every number above, one JSON object per (policy, seed)
  table.md, curves.png, pass_at_k.png, RESULTS.md   written by `experiments.decisive_report`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import study  # noqa: E402  (sets HF_HUB_OFFLINE / JAX_PLATFORMS before jax loads)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default=os.path.join(study.ROOT, "configs/experiments/decisive.py"))
  p.add_argument("--out", default=None)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--methods", default=None, help="comma-separated subset of the config's methods")
  p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's)")
  p.add_argument("--report", action="store_true", help="only regenerate the report from metrics.jsonl")
  args = p.parse_args(argv)
  if args.out is None:
    args.out = os.path.join(study.ROOT, "experiments/results/decisive" + ("_quick" if args.quick else ""))
  return args


def run_method(cfg, name, seeds, setup, log) -> dict:
  """One method's seeds trained together; evaluated at `eval.curve_every` and at the end."""
  from experiments import common, vmapped
  graphdef, params, bench, train_examples, evaluator = setup
  rc = common.rl_config(cfg, dict(cfg.methods[name]), seeds[0])
  trainer = vmapped.VmappedTrainer(rc, graphdef, bench.sampler, bench.tokenizer, bench.scorer,
                                   train_examples)
  runs = trainer.start(params, seeds)
  start, train = time.time(), [[] for _ in seeds]
  evals, every = {}, int(cfg.eval.curve_every)
  for step in range(1, rc.train.steps + 1):
    for s, m in enumerate(trainer.iteration(runs)):
      train[s].append({"step": step, **{k: round(v, 6) for k, v in m.items()}})
    log(f"[{name}] step {step}/{rc.train.steps} reward "
        f"{sum(t[-1]['reward_mean'] for t in train) / len(seeds):.3f} ({time.time() - start:.0f} s)")
    if step == rc.train.steps or (every and step % every == 0):
      t = time.time()
      evals[str(step)] = evaluator.correct_counts(runs.params_S, len(seeds)).tolist()
      log(f"[{name}] evaluated step {step} ({time.time() - t:.0f} s)")
  return {"name": name, "seeds": seeds, "method": dict(cfg.methods[name]), "train": train,
          "counts": evals, "wall_s": round(time.time() - start, 1),
          "load_avg_1min": round(os.getloadavg()[0], 1)}


def main(argv=None):
  args = parse_args(argv)
  from experiments import common, decisive_report, decisive_setup, seed_eval, task
  cfg = study.load_config(args.config, args.quick)
  log = lambda msg: print(msg, flush=True)
  if args.report:
    decisive_report.write(args.out, cfg)
    return
  seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [int(s) for s in cfg.seeds]
  methods = args.methods.split(",") if args.methods else list(cfg.methods)
  unknown = set(methods) - set(cfg.methods)
  if unknown:
    sys.exit(f"error: unknown methods {sorted(unknown)}; known: {list(cfg.methods)}")
  os.makedirs(os.path.join(args.out, "seeds"), exist_ok=True)
  start = time.time()
  committed = os.path.join(study.ROOT, "experiments/results/decisive")   # the committed warm start
  graphdef, params, warm, train_indices, eval_examples = decisive_setup.setup(
      cfg, args.out, log, warm_dirs=(committed,))
  tcfg = task.task_config(cfg.task)
  train_examples = [task.example(i, tcfg) for i in train_indices]
  bench = common.Bench(cfg, graphdef, params)
  evaluator = seed_eval.SeedEvaluator(bench.sampler, bench.tokenizer, eval_examples, cfg.eval,
                                      cfg.rl.data.prompt_bucket, int(cfg.eval.get("chunk_problems", 32)))
  setup = (graphdef, params, bench, train_examples, evaluator)

  base_path = os.path.join(args.out, "base.json")
  base_hash = common.config_hash(cfg.eval, warm["npz_sha256"])
  base = study._load_run(base_path, base_hash)
  if base is None:
    import jax
    t = time.time()
    counts = evaluator.correct_counts(jax.tree.map(lambda x: x[None], params), 1)[0]
    base = {"config_hash": base_hash, "counts": counts.tolist(), "wall_s": round(time.time() - t, 1)}
    with open(base_path, "w") as f:
      json.dump(base, f)
  log(f"[base] mean correct {sum(base['counts']) / len(base['counts']):.1f} of "
      f"{cfg.eval.num_samples} ({time.time() - start:.0f} s)")

  for name in methods:
    expected = common.config_hash(common.rl_config(cfg, dict(cfg.methods[name]), 0), cfg.eval,
                                  seeds) + "/" + warm["npz_sha256"][:16]
    path = os.path.join(args.out, "seeds", f"{name}.json")
    record = study._load_run(path, expected)
    if record is None:
      record = run_method(cfg, name, seeds, setup, log)
      record["config_hash"] = expected
      with open(path, "w") as f:
        json.dump(record, f)
    else:
      log(f"[{name}] reused {path} (same config hash)")
  meta = {"command": " ".join([os.path.relpath(sys.argv[0], study.ROOT)] + sys.argv[1:]),
          "config": os.path.relpath(args.config, study.ROOT), "quick": bool(args.quick),
          "warm_start": {k: v for k, v in warm.items() if k != "loss_curve"},
          "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                     f"load average at the end {os.getloadavg()[0]:.1f}",
          "jax": __import__("jax").__version__, "wall_s": round(time.time() - start, 1)}
  decisive_report.write_metrics(args.out, cfg, meta)
  decisive_report.write(args.out, cfg)
  log(f"[done] {time.time() - start:.0f} s; results in {args.out}")


if __name__ == "__main__":
  main()
