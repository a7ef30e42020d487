#!/usr/bin/env bash
# Study 4 (issue 24) on one GPU in one call: 10x the CPU pilot's model and samples, 33 seeds per
# method (configs/experiments/decisive_gpu.py). Budget: < 8 minutes of device time (a hard timeout
# of 450 s on the study; the driver saves each finished method, so a second call resumes).
#   bash experiments/decisive_gpu.sh              # results in experiments/results/decisive_gpu/
#   bash experiments/decisive_gpu.sh --quick      # smoke test (tiny sizes; also runs on a CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export HF_HUB_OFFLINE=1
if [[ " $* " != *" --quick "* ]]; then
  export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
  "$PYTHON" -c "import jax; d = jax.devices()[0]; print('device:', d.device_kind)"
fi
start=$(date +%s)
timeout 450 "$PYTHON" experiments/decisive.py --config configs/experiments/decisive_gpu.py \
  --out "${OUT:-experiments/results/decisive_gpu}" "$@"
echo "decisive_gpu.sh: $(( $(date +%s) - start )) s"
