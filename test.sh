#!/usr/bin/env bash
# Fresh-machine command 2: set up (first time only) and run the whole test suite.
# Extra arguments go to pytest, e.g.  bash test.sh tests/losses -x   (-n 0: one process, no workers)
set -uo pipefail
cd "$(dirname "$0")"
bash scripts/ensure_env.sh dev || exit 1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Two pytest-xdist workers: much of the suite is single-threaded XLA compilation, which then overlaps
# (2-core VM, 2026-11-29: 766 s in one process, 535 s on two workers; 2026-12-07, 764 tests with the
# multi-process, GCS-emulator and launch tests: 970 s on two workers, 28.6 min of CPU).
.venv/bin/python -m pytest -n 2 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
