"""The long SIGKILL test: N seeded trials, each killing a tiny run up to K times at random moments.

    python -m tests.faults.kill_trials --trials 12 --max-kills 3      # ~8-15 min on 2 CPU cores

Each trial (tests/faults/harness.py `kill_trial`) draws every kill from {sampling, update, right after
an async save started, a random wall-clock delay}, checks that every restart resumes from the last
complete checkpoint (never a partial `*.orbax-checkpoint-tmp` one), and that the finished run equals an
uninterrupted one bit for bit (params, optimizer state, PRNG, data-iterator state, prompts consumed at
every step). Prints one line per trial and a summary; exits 1 if any trial failed. The CI version is
tests/faults/test_preemption.py (4 kills).
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys
import tempfile
import time
import traceback

from tests.faults import harness


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trials", type=int, default=12)
  parser.add_argument("--seed", type=int, default=100, help="trial i uses seed + i")
  parser.add_argument("--max-kills", type=int, default=3)
  parser.add_argument("--max-delay", type=float, default=10.0, help="longest random kill delay (s)")
  parser.add_argument("--workdir", default=None, help="keep runs here (default: a temp dir)")
  parser.add_argument("--json", default=None, help="also write the per-trial reports here")
  args = parser.parse_args(argv)

  work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="simko_kill_trials_"))
  work.mkdir(parents=True, exist_ok=True)
  cache = work / "jax_cache"
  start = time.time()
  reference = work / "reference"
  rc, text = harness.run(reference, cache_dir=cache)
  if rc != 0:
    print(text[-3000:])
    return 1
  reports, failures = [], 0
  for i in range(args.trials):
    seed = args.seed + i
    try:
      report = harness.kill_trial(seed, work / f"trial_{seed}", reference, cache_dir=cache,
                                  max_kills=args.max_kills, max_delay_s=args.max_delay)
      report["ok"] = True
    except Exception as err:  # noqa: BLE001 - report every trial, then fail at the end
      failures += 1
      report = {"seed": seed, "ok": False, "error": f"{type(err).__name__}: {err}"[:2000]}
      traceback.print_exc()
    reports.append(report)
    kills = ", ".join(f"{k['mode']}@{k['at'] if isinstance(k['at'], int) else round(k['at'], 2)}"
                      f"->resume {k['resumed_from']}" for k in report.get("kills", []))
    print(f"trial seed={seed}: {'PASS' if report['ok'] else 'FAIL'} "
          f"launches={report.get('launches')} kills=[{kills}]", flush=True)

  modes = collections.Counter(k["mode"] for r in reports for k in r.get("kills", []))
  partial = sum(bool(k["partial_after"]) for r in reports for k in r.get("kills", []))
  print(f"\n{args.trials - failures}/{args.trials} trials passed; {sum(modes.values())} kills "
        f"({dict(sorted(modes.items()))}); after {partial} kills a partial checkpoint directory "
        f"(*.orbax-checkpoint-tmp) was present and the restart ignored it; "
        f"{time.time() - start:.0f} s; runs in {work}")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(reports, indent=1))
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
