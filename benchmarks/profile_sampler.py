"""Where one sampling call's time goes: an XLA:CPU op profile of the `benchmarks/sampling.py` workload.

  python benchmarks/profile_sampler.py                      # trace, then the table (~1.5 min)
  python benchmarks/profile_sampler.py --out /tmp/p --top 60

Runs our sampler on the sampling benchmark's workload (SmolLM2-135M, batch 32, prompt 64, 128 new
tokens, temperature 1, float32), twice warm, then once under `jax.profiler.trace` with XLA:CPU's
per-op trace events on (`--xla_cpu_enable_xprof_traceme`, set here before JAX starts), and writes the
trace and the compiled HLO to --out. The table needs `xprof` to read the trace, which is kept out of the
project venv: it is read by `--xprof_python` (default /tmp/venv-prof/bin/python; create it with
`python -m venv /tmp/venv-prof && /tmp/venv-prof/bin/pip install xprof`).

Table: exclusive time of the XLA worker-thread events, summed over the call and grouped by the op's
output shape and JAX op name (from the HLO metadata), so "f32[32,3072] .../while/body/btd,dcf->btcf"
is the decode loop's gate/up matmul over all layers and steps; divide by the step count for ms/step.
Ops outside `while/body` are the per-call prefill and weight layout. Numbers are thread time: when
both cores work on one op its time is counted once per thread event, so the total is close to, but not
exactly, the wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Runs in the xprof venv: argv = trace dir, number of rows.
_TABLE = r'''
import collections, glob, re, sys
from xprof import profile_data
out, top = sys.argv[1], int(sys.argv[2])
hlo = open(out + "/hlo.txt").read()
label = {}
for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+?(?:\{[^}]*\})?) (\w[\w\-]*)\(.*$", hlo, re.M):
  op = re.search(r'op_name="([^"]*)"', m.group(0))
  shape = re.sub(r"\{[^}]*\}", "", m.group(2))
  label[m.group(1)] = f"{shape:22s} {op.group(1).replace('jit(program)/', '')[-70:] if op else m.group(3)}"
excl, count = collections.Counter(), collections.Counter()
for path in sorted(glob.glob(out + "/plugins/profile/*/*.xplane.pb"))[-1:]:  # the latest trace only
  for plane in profile_data.ProfileData.from_file(path).planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLAEigen"):
        continue
      stack = []  # open events on this thread: [end_ns, name]
      for start, dur, name in sorted(((e.start_ns, e.duration_ns, e.name) for e in line.events),
                                     key=lambda e: (e[0], -e[1])):
        while stack and stack[-1][0] <= start:
          stack.pop()
        if stack:
          excl[stack[-1][1]] -= dur  # exclusive time: a parent loses its children's time
        stack.append([start + dur, name])
        excl[name] += dur
        count[name] += 1
groups, calls = collections.Counter(), collections.Counter()
for name, ns in excl.items():
  key = label.get(name, name.split(".")[0] + " (runtime)")
  groups[key] += ns
  calls[key] += count[name]
total = sum(groups.values())
print(f"total thread time {total / 1e9:.2f} s")
print(f"{'ms':>9} {'%':>5} {'calls':>7}  output shape / op")
for key, ns in groups.most_common(top):
  print(f"{ns / 1e6:9.1f} {100 * ns / total:5.1f} {calls[key]:7d}  {key}")
'''


def trace(out: str, dtype: str = "float32") -> None:
  """Warm up, then trace one sampling call into `out` and write the compiled HLO to out/hlo.txt."""
  import jax
  import numpy as np
  sys.path.insert(0, HERE)
  sys.path.insert(0, os.path.join(HERE, "peers"))
  from common import random_prompts
  from sampling import build_model

  from simko_jax.sampling import Sampler
  model, _ = build_model("auto", dtype)
  sampler, state = Sampler.from_model(model, stop_ids=(), prompt_bucket=64, gen_bucket=64)
  prompt = random_prompts(32, 64, model.cfg.vocab_size)
  mask = np.ones_like(prompt)
  kw = dict(n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0)
  for seed in range(3):  # compile, then two warm calls
    np.asarray(sampler.sample(state, prompt, mask, jax.random.key(seed), **kw).tokens)
  with jax.profiler.trace(out):
    np.asarray(sampler.sample(state, prompt, mask, jax.random.key(3), **kw).tokens)
  with open(os.path.join(out, "hlo.txt"), "w") as f:
    f.write(sampler.lower(state, prompt, mask, jax.random.key(0), **kw).compile().as_text())


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", default="/tmp/simko_profile")
  ap.add_argument("--top", type=int, default=40)
  ap.add_argument("--xprof_python", default="/tmp/venv-prof/bin/python")
  ap.add_argument("--table_only", action="store_true", help="re-read an existing trace in --out")
  ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  args = ap.parse_args()
  if not args.table_only:
    if "jax" in sys.modules:
      raise RuntimeError("set XLA_FLAGS before JAX starts: run this file as a script")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    trace(args.out, args.dtype)
  if not os.path.exists(args.xprof_python):
    sys.exit(f"trace written to {args.out}; --xprof_python {args.xprof_python} does not exist (see the module doc)")
  subprocess.run([args.xprof_python, "-c", _TABLE, args.out, str(args.top)], check=True)


if __name__ == "__main__":
  main()
