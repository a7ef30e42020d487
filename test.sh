#!/usr/bin/env bash
# Fresh-machine command 2: set up (first time only) and run the whole test suite.
# Extra arguments go to pytest, e.g.  bash test.sh tests/losses -x
set -uo pipefail
cd "$(dirname "$0")"
bash scripts/ensure_env.sh dev || exit 1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
