#!/usr/bin/env bash
# Interleaved A/B of our sampler between two git revisions, for changes smaller than the VM's drift.
#
#   bash benchmarks/ab_sampling.sh REV_A REV_B [PAIRS=3] [RUNS=3]
#
# Checks both revisions out as worktrees under ${TMPDIR:-/tmp}, then runs `benchmarks/sampling.py
# --peers none --runs RUNS` (same workload as the peer table) alternately A, B, A, B, ... PAIRS times
# with this checkout's .venv, each revision importing its own simko_jax, and prints best tok/s per run
# and the mean B / A ratio. Run it alone on the machine (~2.5 min per pair on 2 CPU cores). Other
# workloads: SAMPLING_ARGS="--new 448" bash benchmarks/ab_sampling.sh ... (extra sampling.py flags).
set -euo pipefail
read -r -a extra <<< "${SAMPLING_ARGS:-}"
cd "$(dirname "$0")/.."
a=$1 b=$2 pairs=${3:-3} runs=${4:-3}
py=$PWD/.venv/bin/python
tmp=${TMPDIR:-/tmp}/simko_ab.$$
trap 'git worktree remove --force "$tmp/A" 2>/dev/null; git worktree remove --force "$tmp/B" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
git worktree add -q --detach "$tmp/A" "$a"
git worktree add -q --detach "$tmp/B" "$b"
for i in $(seq 1 "$pairs"); do
  for v in A B; do
    (cd "$tmp/$v" && PYTHONPATH="$tmp/$v" HF_HUB_OFFLINE=1 "$py" benchmarks/sampling.py --peers none \
      --runs "$runs" "${extra[@]}" | sed -n 's/^JSON //p' > "$tmp/$v.$i.json")
    "$py" -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(sys.argv[2], sys.argv[3], r['tokens_per_s'], 'tok/s best,', r['tokens_per_s_median'], 'median')" "$tmp/$v.$i.json" "$v" "$i"
  done
done
"$py" - "$tmp" "$pairs" <<'PY'
import json, sys
tmp, pairs = sys.argv[1], int(sys.argv[2])
best = {v: [json.load(open(f"{tmp}/{v}.{i}.json"))["results"][0]["tokens_per_s"] for i in range(1, pairs + 1)]
        for v in "AB"}
ratios = [b / a for a, b in zip(best["A"], best["B"])]
print(f"B / A per pair: {' '.join(f'{r:.3f}' for r in ratios)}; mean {sum(ratios) / len(ratios):.3f}")
PY
