"""CPU rehearsal of `benchmarks/accelerator.py`, the script a lent GPU runs once: every part measures
without an error, the merged summary derives its ratios, and --profile leaves one trace per part."""

import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quick_run_measures_every_part_and_writes_traces(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  script = os.path.join(ROOT, "benchmarks", "accelerator.py")
  run = lambda *args: subprocess.run([sys.executable, script, "--quick", *args], env=env, cwd=ROOT,
                                     capture_output=True, text=True, timeout=600)
  jax_part = run("--parts", "decode,train", "--profile", str(tmp_path / "traces"), "--out", str(tmp_path / "jax.json"))
  assert jax_part.returncode == 0, jax_part.stderr[-3000:]
  peer = run("--parts", "peer", "--out", str(tmp_path / "peer.json"))
  assert peer.returncode == 0, peer.stderr[-3000:]
  merged = run("--parts", "", "--merge", str(tmp_path / "jax.json"), str(tmp_path / "peer.json"),
               "--out", str(tmp_path / "all.json"))
  assert merged.returncode == 0, merged.stderr[-3000:]
  summary = json.loads((tmp_path / "all.json").read_text())
  assert summary["errors"] == {}
  assert summary["decode"]["decode_tokens_per_s"] > 0 and summary["decode"]["compilations"] == 1
  assert summary["train"]["step_s"] > 0 and summary["train"]["method"] == "simko"
  assert summary["peer"]["generate"]["decode_tokens_per_s"] > 0 and summary["peer"]["train"]["step_s"] > 0
  for part in ("decode", "train"):
    assert glob.glob(str(tmp_path / "traces" / part / "plugins" / "profile" / "*" / "*.xplane.pb")), part
