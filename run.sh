#!/usr/bin/env bash
# Fresh-machine command 1: set up (first time only) and run the embedded default training job.
# Extra arguments are passed through, e.g.  bash run.sh --config.train.steps=5
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/ensure_env.sh runtime
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m simko_jax.main --config configs/default.py "$@"
