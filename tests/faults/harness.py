"""Drives tiny trainer runs as subprocesses, injects faults, and compares finished runs bit for bit.

A run is `python -m simko_jax.main --config configs/tiny_random.py` with a few steps, a checkpoint every
step, signed advantages and no eval, on one CPU device. All launches of a session share a JAX
persistent compilation cache (`cache_dir`), which cuts a launch from ~15 s to ~7 s on 2 cores.
Faults are injected with the loop's test-only `SIMKO_FAULT_AT` hook (see simko_jax/train/loop.py) or
by SIGKILL/SIGTERM after a delay.

"Same run" (`assert_same_run`) means, for the final checkpoint: identical params, optimizer state, PRNG
key and data-iterator state (np.array_equal on every leaf), and the same prompts consumed at every step
(`data_order.jsonl`; a step redone after a crash must consume the same ids as its first attempt).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np

from simko_jax import storage

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 6
PHASES = ("sample", "update", "save")


def env(cache_dir=None, fault: str | None = None) -> dict:
  e = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
  e.pop("SIMKO_FAULT_AT", None)
  if fault:
    e["SIMKO_FAULT_AT"] = fault
  if cache_dir:
    e.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return e


def args(out_dir, steps=STEPS, **extra) -> list[str]:
  # Signed advantages: the random model earns no reward, and GRPO's zero advantages would leave the
  # params unchanged; -1 on every sampled response makes every update depend on what was sampled.
  base = {"out_dir": out_dir, "train.steps": steps, "checkpoint.every": 1, "eval.enabled": False,
          "algo.advantage": "signed"}
  base.update(extra)
  return [f"--config.{k}={v}" for k, v in base.items()]


def launch(out_dir, steps=STEPS, *, fault=None, cache_dir=None, log_path=None,
           module="simko_jax.main", extra_env=None, config="configs/tiny_random.py",
           **extra) -> subprocess.Popen:
  """Starts a run; stdout+stderr go to `log_path` (a file: no pipe can fill up while we wait)."""
  log_path = log_path or f"{out_dir}.log"
  log = open(log_path, "w")
  proc = subprocess.Popen(
      [sys.executable, "-m", module, "--config", config, *args(out_dir, steps, **extra)], cwd=ROOT,
      env={**env(cache_dir, fault), **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT,
      text=True)
  proc.log_path = log_path
  log.close()
  return proc


def output(proc) -> str:
  with open(proc.log_path) as f:
    return f.read()


def run(out_dir, steps=STEPS, *, timeout=300, **kw) -> tuple[int, str]:
  """Launches and waits; returns (returncode, output)."""
  proc = launch(out_dir, steps, **kw)
  try:
    proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    raise AssertionError(f"run timed out after {timeout}s:\n{output(proc)[-3000:]}")
  return proc.returncode, output(proc)


# out_dir: a local path or a gs:// URL (tests/faults/test_gcs_run.py), hence `storage` paths below.
# Orbax commits a step locally by renaming `<step>.orbax-checkpoint-tmp-*` to `<step>`; on GCS (no
# rename) it writes `<step>/` in place and marks it complete with `<step>/commit_success.txt`.
def _committed(step_dir) -> bool:
  return not storage.is_remote(step_dir) or (step_dir / "commit_success.txt").exists()


def complete_steps(out_dir) -> list[int]:
  ckpt = storage.join(out_dir, "checkpoints")
  return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit() and _committed(p)) \
      if ckpt.is_dir() else []


def partial_saves(out_dir) -> list[str]:
  ckpt = storage.join(out_dir, "checkpoints")
  return sorted(p.name for p in ckpt.iterdir()
                if "tmp" in p.name or (p.name.isdigit() and not _committed(p))) if ckpt.is_dir() else []


def resumed_from(text: str) -> int | None:
  found = re.findall(r"resumed from checkpoint step (\d+)", text)
  return int(found[-1]) if found else None


def data_order(out_dir) -> dict[int, list[int]]:
  """{step: example ids}; asserts that every redo of a step consumed the same ids as the first try."""
  order: dict[int, list[int]] = {}
  for line in storage.join(out_dir, "data_order.jsonl").read_text().splitlines():
    record = json.loads(line)
    first = order.setdefault(record["step"], record["example_ids"])
    assert first == record["example_ids"], f"step {record['step']} redone on other data: {record}"
  return order


def checkpoint_state(out_dir, step: int) -> dict:
  """{"params", "train" (opt_state + rng)}: flat {path: np.ndarray}; "data", "meta": JSON items.
  Arrays are read onto one local device, so checkpoints written by several processes load too."""
  import jax
  import orbax.checkpoint as ocp
  directory = storage.absolute(storage.join(out_dir, "checkpoints"))
  one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = lambda item: ocp.args.StandardRestore(jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one_device),
      ocp.StandardCheckpointer().metadata(storage.join(directory, str(step), item)).item_metadata))
  manager = ocp.CheckpointManager(directory)
  restored = manager.restore(step, args=ocp.args.Composite(
      params=target("params"), train=target("train"),
      data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
  manager.close()
  flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v)
                       for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  return {"params": flat(restored["params"]), "train": flat(restored["train"]),
          "data": restored["data"], "meta": restored["meta"]}


def assert_same_trees(a: dict, b: dict, what: str) -> None:
  assert a.keys() == b.keys(), what
  for key in a:
    assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), f"{what}{key} differs"


def assert_params_moved(out_dir, step: int) -> None:
  """Step `step`'s update changed every parameter array (compared with the newest complete checkpoint
  before it). A run whose updates change nothing (zero advantages: no reward, GRPO) would make every
  "same run" comparison pass on the params whatever the resume did."""
  earlier = [s for s in complete_steps(out_dir) if s < step]
  assert earlier, f"no checkpoint before step {step} in {out_dir} to compare with"
  before, after = checkpoint_state(out_dir, earlier[-1])["params"], checkpoint_state(out_dir, step)["params"]
  assert before.keys() == after.keys()
  unchanged = [k for k in before if np.array_equal(before[k], after[k])]
  assert not unchanged, f"steps {earlier[-1]} -> {step} left these params unchanged: {unchanged}"


def assert_same_run(reference_dir, out_dir, steps=STEPS) -> None:
  """The finished run in `out_dir` equals the uninterrupted `reference_dir` run (module doc), and its
  last update really changed the params (`assert_params_moved`)."""
  assert complete_steps(out_dir)[-1] == steps
  assert_params_moved(reference_dir, steps)
  a, b = checkpoint_state(reference_dir, steps), checkpoint_state(out_dir, steps)
  assert_same_trees(a["params"], b["params"], "params")
  assert_same_trees(a["train"], b["train"], "optimizer state / rng ")
  assert a["data"] == b["data"], "data iterator state differs"
  assert data_order(reference_dir) == data_order(out_dir) and len(data_order(out_dir)) == steps


def wait_for_step(out_dir, proc, step: int, timeout=240.0) -> bool:
  """Waits until metrics.jsonl has `step` lines; False if the process exited first."""
  path = pathlib.Path(out_dir) / "metrics.jsonl"
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if path.exists() and len(path.read_text().splitlines()) >= step:
      return True
    time.sleep(0.02)
  return False


def kill_trial(seed: int, out_dir, reference_dir, *, cache_dir=None, max_kills=3, steps=STEPS,
               modes=PHASES + ("time",), max_delay_s=12.0, plan=None, log_dir=None) -> dict:
  """Kills a run with SIGKILL at seeded random points until it finishes; checks every resume.

  Each launch draws a mode: a phase of `PHASES` at a random step after the last complete checkpoint
  (killed by the loop's hook), or "time" (SIGKILL after a uniform random delay in [0, max_delay_s],
  which lands anywhere: imports, compilation, restore, sampling, update, async save). `plan`, a list
  of (phase, step), replaces the draws (a step not after the last complete checkpoint is moved just
  after it). After a kill the last complete checkpoint is read off the directory; the next launch must
  resume from exactly it (or start fresh when there is none). Returns a report of the kills; asserts
  the final run equals the uninterrupted reference run. `log_dir`: where launch logs go (default: next
  to `out_dir`, which must then be local).
  """
  rng = np.random.default_rng(seed)
  kills, launch_no = [], 0
  max_kills = len(plan) if plan is not None else max_kills
  while True:
    done = complete_steps(out_dir)
    expected = done[-1] if done else None
    kill = None
    if len(kills) < max_kills and (expected or 0) < steps:
      mode = plan[len(kills)][0] if plan is not None else modes[rng.integers(len(modes))]
      if mode == "time":
        kill = (mode, float(plan[len(kills)][1]) if plan is not None else
                float(rng.uniform(0, max_delay_s)))
      else:
        at = plan[len(kills)][1] if plan is not None else int(rng.integers((expected or 0) + 1,
                                                                           steps + 1))
        kill = (mode, max(at, (expected or 0) + 1))
    fault = f"{kill[0]}:{kill[1]}" if kill and kill[0] != "time" else None
    proc = launch(out_dir, steps, fault=fault, cache_dir=cache_dir,
                  log_path=os.path.join(log_dir, f"launch{launch_no}.log") if log_dir else
                  f"{out_dir}.launch{launch_no}.log")
    if kill and kill[0] == "time":
      try:
        proc.wait(timeout=kill[1])
      except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=300)
    text = output(proc)
    launch_no += 1
    got = resumed_from(text)  # a timed kill may land before the restore: then nothing is printed
    if proc.returncode == 0 or (kill and kill[0] != "time") or got is not None:
      assert got == expected, (expected, text[-2000:])
    if proc.returncode == 0:
      break
    assert proc.returncode == -signal.SIGKILL, text[-3000:]
    kills.append({"mode": kill[0], "at": kill[1], "resumed_from": expected,
                  "complete_after": complete_steps(out_dir)[-1:] or None,
                  "partial_after": partial_saves(out_dir)})
  assert_same_run(reference_dir, out_dir, steps)
  return {"seed": seed, "launches": launch_no, "kills": kills}
