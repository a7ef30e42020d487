#!/usr/bin/env bash
# One-shot accelerator check for a lent H100/H200 (at most ~8 minutes; nothing is downloaded there).
#
#   bash benchmarks/accelerator_check.sh            # results in $OUT (default ./accel_out)
#   ACCEL_ARGS=--quick TEST_PLATFORM=cpu bash benchmarks/accelerator_check.sh   # CPU rehearsal
#
# Prepare on a machine with pip access, in the repo root (wheels the GPU image lacks; git-ignored):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl flax==0.12.8 ml_collections==1.1.0
# and carry `.whl` with the run. The image's python3 brings jax[cuda], optax, torch and transformers.
#
# Steps (each bounded by `timeout`, each writing its log to $OUT):
#   1. versions and the GPU (nvidia-smi);
#   2. install the carried wheels into /tmp/site: ml_collections always, flax==0.12.8 only if the
#      image's flax cannot run a tiny model of ours (then our pinned one is used);
#   3. benchmarks/accelerator.py on the Qwen2.5-0.5B shape in bf16 with cuDNN attention (JAX parts),
#      then its PyTorch peer in a separate process, merged into $OUT/accelerator.json;
#   4. the GPU test subset: sampler, decode, train step and chunked loss tests;
#   3b. benchmarks/rl_iteration.py: fused rl_train_step vs phase-by-phase iteration time and transfer bytes;
#   5. $OUT/profile.tgz: the device traces step 3 took of a 16-token decode and one train step (read
#      them here with `benchmarks/profile_summary.py`: time per HLO op).
set -u
OUT="${OUT:-$PWD/accel_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
start=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - start )) s] $*"; }

stamp "1. environment"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/env.txt"
$PY -c "import sys, jax, optax; print(sys.version.split()[0], 'jax', jax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 | tee -a "$OUT/env.txt"

stamp "2. wheels"
SITE=/tmp/site
if ls .whl/ml_collections-*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/ml_collections-*.whl
  export PYTHONPATH="$SITE:$PYTHONPATH"
fi
smoke='import jax, jax.numpy as jnp, flax; from flax import nnx
from simko_jax.models import Transformer, tiny_qwen2
m = Transformer(tiny_qwen2(), rngs=nnx.Rngs(0)); print("flax", flax.__version__, "smoke logits", m(jnp.ones((1, 4), jnp.int32)).shape)'
if ! $PY -c "$smoke" 2>&1 | tee -a "$OUT/env.txt"; then
  echo "image flax failed the smoke test: using the carried flax 0.12.8" | tee -a "$OUT/env.txt"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE/flax_pinned" .whl/flax-*.whl
  export PYTHONPATH="$SITE/flax_pinned:$PYTHONPATH"
  $PY -c "$smoke" 2>&1 | tee -a "$OUT/env.txt"
fi

stamp "3. benchmarks (JAX parts, then the PyTorch peer in its own process)"
PROFILE=/tmp/accel_profile
rm -rf "$PROFILE"
timeout 300 $PY benchmarks/accelerator.py ${ACCEL_ARGS:-} --parts ceilings,decode,train,grpo --out "$OUT/accel_jax.json" \
  --profile "$PROFILE" \
  > "$OUT/bench_jax.log" 2>&1; echo "jax parts rc=$?"; grep -E '^\[' "$OUT/bench_jax.log" | cut -c1-400
JAX_PLATFORMS=cpu timeout 150 $PY benchmarks/accelerator.py ${ACCEL_ARGS:-} --parts peer --out "$OUT/accel_peer.json" \
  > "$OUT/bench_peer.log" 2>&1; echo "peer rc=$?"; grep -E '^\[' "$OUT/bench_peer.log" | cut -c1-400
$PY benchmarks/accelerator.py ${ACCEL_ARGS:-} --parts '' --merge "$OUT/accel_jax.json" "$OUT/accel_peer.json" \
  --out "$OUT/accelerator.json" 2>&1 | grep -v '^JSON'

stamp "3b. the fused rl_train_step vs the phase-by-phase iteration (one SimKO run each, A/B interleaved)"
timeout 150 $PY benchmarks/rl_iteration.py --shape smollm2 --paths phase,fused --methods simko --peers none \
  --iterations 3 --new 128 > "$OUT/fused.log" 2>&1; echo "fused rc=$?"
grep -E 'fused|host->device|^JSON' "$OUT/fused.log" | cut -c1-600

stamp "4. GPU test subset"
# conftest.py defaults to the CPU platform; point it at the GPU. fp32 matmuls at full precision there.
# No -x: one numerics failure must not hide the rest. The train-step and chunked-loss files go first
# (the H200 run of 2026-11-28 hit the time limit before reaching them).
JAX_PLATFORMS="${TEST_PLATFORM:-cuda}" timeout 200 $PY -m pytest -p no:cacheprovider --durations=5 \
  tests/train/test_step.py tests/losses/test_chunked.py tests/sampling/test_sampler.py \
  tests/sampling/test_filtering.py tests/models/test_decode.py > "$OUT/pytest_gpu.log" 2>&1
echo "pytest rc=$?"; tail -15 "$OUT/pytest_gpu.log"

stamp "5. traces"
# Only the .xplane.pb files (the trace viewer's JSON is derived from them); at most 8 files come back
# from $OUT, 16 MiB each, so all traces travel as one archive, the decode trace dropped if it is too big.
(cd "$PROFILE" 2>/dev/null && tar czf "$OUT/profile.tgz" $(find . -name '*.xplane.pb')) || echo "no traces"
if [ -f "$OUT/profile.tgz" ] && [ "$(stat -c %s "$OUT/profile.tgz")" -gt $((15 * 2 ** 20)) ]; then
  (cd "$PROFILE" && tar czf "$OUT/profile.tgz" $(find ./train -name '*.xplane.pb'))
fi
ls -la "$OUT"
stamp "done"
