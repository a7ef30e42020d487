"""The driver both CPU studies share: parse flags, build the warm start, run every (run, seed), write.

Layout of a study's `--out` folder:
  warm_start.npz / warm_start.json   the supervised warm start (cached; reused when its config matches)
  runs/<name>_s<seed>.json           one finished RL run: per-step metrics and the final evaluation
                                     (reused by a rerun when its config hash matches: resumable)
  base.json                          the warm start's own evaluation
  metrics.jsonl                      every number above, one JSON object per line
  table.md, *.png, RESULTS.md        written by `experiments.reporting`
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def load_config(path: str, quick: bool):
  spec = importlib.util.spec_from_file_location("experiment_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config()
  return module.quick(cfg) if quick else cfg


def parse_args(default_config: str, default_out: str, argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default=os.path.join(ROOT, default_config))
  p.add_argument("--out", default=None, help=f"results folder (default {default_out}, "
                 f"or {default_out}_quick with --quick)")
  p.add_argument("--seeds", default=None, help="comma-separated seeds for every run (default: the "
                 "config's `seeds`, and `seeds_per_run` where it names a run)")
  p.add_argument("--runs", default=None, help="comma-separated subset of the config's runs")
  p.add_argument("--quick", action="store_true", help="smoke mode: tiny sizes, same code paths")
  p.add_argument("--warm_start", default=None,
                 help="folder of a cached warm start to reuse (default: the --out folder)")
  p.add_argument("--reuse_from", default=None,
                 help="another study's runs/ folder: runs with the same config hash and seed are "
                      "copied instead of recomputed")
  args = p.parse_args(argv)
  if args.out is None:
    args.out = os.path.join(ROOT, default_out + ("_quick" if args.quick else ""))
  return args


def _load_run(path: str, expected_hash: str):
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    record = json.load(f)
  return record if record.get("config_hash") == expected_hash else None


def run_study(args, runs_of_cfg, writer) -> None:
  """runs_of_cfg(cfg) -> {run name: algo fields}; writer(out, cfg, base, records, meta) writes reports."""
  from experiments import common
  cfg = load_config(args.config, args.quick)
  seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [int(s) for s in cfg.seeds]
  runs = runs_of_cfg(cfg)
  if args.runs:
    wanted = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = set(wanted) - set(runs)
    if unknown:
      sys.exit(f"error: unknown runs {sorted(unknown)}; known: {list(runs)}")
    runs = {k: v for k, v in runs.items() if k in wanted}
  os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
  start = time.time()
  log = lambda msg: print(msg, flush=True)
  graphdef, params, warm_info = common.warm_start(cfg, [args.warm_start, args.out], log)
  bench = common.Bench(cfg, graphdef, params)

  base_hash = common.config_hash(cfg.model, cfg.task, cfg.sft, cfg.eval)
  base = _load_run(os.path.join(args.out, "base.json"), base_hash)
  if base is None:
    base = {"config_hash": base_hash, "eval": bench.evaluate_policy(params)}
    with open(os.path.join(args.out, "base.json"), "w") as f:
      json.dump(base, f, indent=1)
  log(f"[base] pass@1 {base['eval']['pass@k']['1']:.3f} pass@{cfg.eval.num_samples} "
      f"{base['eval']['pass@k'][str(cfg.eval.num_samples)]:.3f} ({time.time() - start:.0f} s)")

  records = []
  per_run = {} if args.seeds else dict(cfg.get("seeds_per_run", {}) or {})
  for name, method in runs.items():
    for seed in [int(x) for x in per_run.get(name, seeds)]:
      expected = common.config_hash(common.rl_config(cfg, method, seed), cfg.eval) + "/" + \
          warm_info["hash"]
      path = os.path.join(args.out, "runs", f"{name}_s{seed}.json")
      record = _load_run(path, expected)
      source = "this folder"
      if record is None and args.reuse_from:
        record = _load_run(os.path.join(args.reuse_from, f"{name}_s{seed}.json"), expected)
        source = args.reuse_from
      if record is None:
        record = common.rl_run(bench, name, method, seed, log)
        record["config_hash"] = expected
      else:
        log(f"[{name} s{seed}] reused the finished run from {source} (same config hash)")
      record["name"] = name
      with open(path, "w") as f:
        json.dump(record, f, indent=1)
      records.append(record)

  meta = {"wall_s": round(time.time() - start, 1), "seeds": seeds, "quick": bool(args.quick),
          "seeds_per_run": {k: [int(x) for x in v] for k, v in per_run.items() if k in runs},
          "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
          "config": os.path.relpath(args.config, ROOT), "warm_start": warm_info,
          "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                     f"load average at the end {os.getloadavg()[0]:.1f}",
          "jax": __import__("jax").__version__}
  writer(args.out, cfg, base, records, meta)
  log(f"[done] {len(records)} runs in {meta['wall_s']:.0f} s; results in {args.out}")
