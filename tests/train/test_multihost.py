"""Two local processes x 4 CPU devices == one process x 8 devices for the jitted train_step.

Each worker (this file run as a script) is started with SIMKO_COORDINATOR / SIMKO_NUM_PROCESSES /
SIMKO_PROCESS_ID, so `simko_jax.train.distributed.maybe_initialize` makes the `jax.distributed` call
(gloo collectives on CPU). Both build the same tiny Llama-3 on a (data=2, fsdp=2, tensor=2) mesh that
spans the two processes, and feed *their own half* of a deterministic batch through `Run.put_rows_micro`
(`jax.make_array_from_process_local_data`). The per-step losses and gradient norms must equal the
single-process 8-device run within 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types

import numpy as np

from tests.multiprocess import free_port, run_processes

N_STEPS, M, MB, P, R = 3, 2, 8, 6, 5   # global micro-batch MB rows; each of 2 processes feeds MB // 2
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def global_batch(step: int):
  """Deterministic host batch [M, MB, ...] for `step` (numpy)."""
  from simko_jax.train.step import Batch
  rng = np.random.default_rng(100 + step)
  n = M * MB
  tokens = rng.integers(3, 64, (n, P + R)).astype(np.int32)
  attn = np.ones((n, P + R), np.int32)
  for i in range(n):
    attn[i, : i % 3] = 0
    tokens[i, : i % 3] = 0
  positions = np.maximum(np.cumsum(attn, -1) - 1, 0).astype(np.int32)
  loss_mask = np.ones((n, R), np.float32)
  loss_mask[1, 3:] = 0
  old = rng.normal(-3.0, 0.5, (n, R)).astype(np.float32)
  adv = rng.normal(size=(n,)).astype(np.float32)
  b = Batch(tokens, attn, positions, loss_mask, old, np.zeros((n, R), np.float32), adv)
  return Batch(*[x.reshape((M, MB) + x.shape[1:]) for x in b])


def run_steps(process_index: int, process_count: int) -> dict:
  """Builds model/optimizer/train_step on a (2, 2, 2) mesh and runs N_STEPS; returns metrics."""
  import jax
  from flax import nnx
  from ml_collections import ConfigDict

  from simko_jax.models.config import tiny_llama3
  from simko_jax.models.transformer import Transformer
  from simko_jax.parallel import model_shardings, shard_model
  from simko_jax.train.setup import Run, build_mesh
  from simko_jax.train.step import LossHParams, jit_train_step, make_optimizer

  mesh = build_mesh(ConfigDict(dict(mesh_data=2, mesh_fsdp=2, mesh_tensor=2)))
  model = Transformer(tiny_llama3(vocab_size=64), rngs=nnx.Rngs(0))
  with jax.set_mesh(mesh):
    shard_model(model, mesh)
  graphdef, params = nnx.split(model)
  optim = ConfigDict(dict(learning_rate=1e-2, schedule="constant", warmup_steps=0, weight_decay=0.0,
                          b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0))
  tx, _ = make_optimizer(optim, 10)
  with jax.set_mesh(mesh):
    opt_state = jax.jit(tx.init)(params)
  step = jit_train_step(graphdef, tx, LossHParams(alpha=0.1, chunk_size=8), model_shardings(model, mesh),
                        jax.tree.map(lambda x: x.sharding, opt_state), mesh)
  run = types.SimpleNamespace(mesh=mesh)
  rows = slice(process_index * MB // process_count, (process_index + 1) * MB // process_count)
  out = {"loss": [], "grad_norm": [], "pg_loss": []}
  for s in range(N_STEPS):
    local = type(global_batch(s))(*[x[:, rows] for x in global_batch(s)])
    batch = Run.put_rows_micro(run, local)
    assert batch.tokens.shape == (M, MB, P + R), batch.tokens.shape
    params, opt_state, metrics = step(params, opt_state, batch)
    for k in out:
      out[k].append(float(np.asarray(metrics[k])))
  return out


def _worker(process_id: int, port: int, out_path: str) -> None:
  sys.path.insert(0, ROOT)
  import jax
  from simko_jax.train import distributed
  distributed.use_gloo_on_cpu()
  jax.config.update("jax_default_matmul_precision", "highest")
  assert distributed.maybe_initialize()
  assert jax.process_count() == 2 and jax.device_count() == 8 and jax.local_device_count() == 4
  result = run_steps(jax.process_index(), jax.process_count())
  gathered = distributed.gather_json({"process": jax.process_index(), "text": "x" * (1 + 5 * process_id)})
  assert gathered == [{"process": 0, "text": "x"}, {"process": 1, "text": "x" * 6}], gathered
  with open(out_path, "w") as f:
    json.dump(result, f)
  jax.distributed.shutdown()


def launch_workers(tmp_path, num: int = 2, timeout: float = 150.0) -> list[dict]:
  port = free_port()
  procs, outs = [], []
  for i in range(num):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               SIMKO_COORDINATOR=f"127.0.0.1:{port}", SIMKO_NUM_PROCESSES=str(num),
               SIMKO_PROCESS_ID=str(i), PYTHONPATH=ROOT)
    outs.append(str(tmp_path / f"worker{i}.json"))
    log = open(tmp_path / f"worker{i}.log", "w")
    procs.append(subprocess.Popen([sys.executable, __file__, "worker", str(i), str(port), outs[-1]],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
  deadline = time.time() + timeout
  try:
    for i, p in enumerate(procs):
      rc = p.wait(timeout=max(1.0, deadline - time.time()))
      assert rc == 0, f"worker {i} exited {rc}:\n" + (tmp_path / f"worker{i}.log").read_text()[-4000:]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  results = []
  for path in outs:
    with open(path) as f:
      results.append(json.load(f))
  return results


def test_two_process_train_step_matches_single_process(tmp_path):
  import jax
  assert jax.device_count() == 8
  workers = launch_workers(tmp_path)
  reference = run_steps(0, 1)
  for w in workers:
    for key in reference:
      np.testing.assert_allclose(w[key], reference[key], atol=1e-5, rtol=1e-5, err_msg=key)
  assert workers[0] == workers[1]          # every process sees the same (replicated) metrics
  assert reference["loss"][0] != reference["loss"][-1]  # the params did move between steps


def _trainer_supports_multiprocess() -> bool:
  """The sampler / rollout / checkpoint fixes for multi-process runs are in (see test below)."""
  import inspect

  from simko_jax.sampling import sampler
  from simko_jax.train import setup
  return ("make_array_from_process_local_data" in inspect.getsource(sampler)
          and "gather_json" in inspect.getsource(setup))


def test_two_process_trainer_runs_and_resumes(tmp_path):
  """The whole trainer (configs/tiny_random.py) as 2 processes x 4 CPU devices: 2 steps, then a
  restart to 3 steps resumes from the step-2 checkpoint; process 0 alone writes one metrics file."""
  import pytest
  if not _trainer_supports_multiprocess():
    pytest.skip("Sampler/setup lack the multi-process changes (host rows in, local rows out; "
                "per-process iterator state in checkpoints)")
  out_dir = tmp_path / "run"

  def trainer(steps, tag):
    run_processes("simko_jax.main", [
        "--config", "configs/tiny_random.py", f"--config.train.steps={steps}",
        "--config.train.mesh_data=2", "--config.train.mesh_tensor=4", "--config.eval.enabled=False",
        f"--config.out_dir={out_dir}"], tmp_path / tag, timeout=240)

  trainer(2, "a")
  lines = (out_dir / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(x)["step"] for x in lines] == [1, 2]
  assert (out_dir / "final_metrics.json").exists()
  assert sorted(os.listdir(out_dir / "checkpoints")) == ["1", "2", "tokenizer"]  # tokenizer: written once
  trainer(3, "b")
  assert "resumed from checkpoint step 2" in (tmp_path / "b0.log").read_text()
  lines = (out_dir / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]


def test_initialize_kwargs_from_environment():
  import pytest

  from simko_jax.train.distributed import DistributedConfigError, initialize_kwargs
  assert initialize_kwargs({}) is None
  assert initialize_kwargs({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None
  assert initialize_kwargs({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"}) == {}
  assert initialize_kwargs({"SLURM_NTASKS": "16"}) is None          # not inside an allocation
  assert initialize_kwargs({"OMPI_COMM_WORLD_SIZE": "4"}) == {}
  assert initialize_kwargs({"TPU_WORKER_HOSTNAMES": "10.0.0.2"}) is None   # single-host TPU VM
  assert initialize_kwargs({"TPU_WORKER_HOSTNAMES": "10.0.0.2,10.0.0.3", "TPU_WORKER_ID": "1"}) == {}
  assert initialize_kwargs({"MEGASCALE_COORDINATOR_ADDRESS": "10.0.0.2"}) == {}
  assert initialize_kwargs({"SIMKO_DISTRIBUTED": "1"}) == {}
  assert initialize_kwargs({"SIMKO_DISTRIBUTED": "0", "SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"}) is None
  env = {"SIMKO_COORDINATOR": "10.0.0.2:1234", "SIMKO_NUM_PROCESSES": "4", "SIMKO_PROCESS_ID": "3",
         "SIMKO_LOCAL_DEVICE_IDS": "0,1", "SLURM_JOB_ID": "7", "SLURM_NTASKS": "9"}
  assert initialize_kwargs(env) == dict(coordinator_address="10.0.0.2:1234", num_processes=4,
                                        process_id=3, local_device_ids=[0, 1])
  for bad in ({"SIMKO_COORDINATOR": "h:1", "SIMKO_NUM_PROCESSES": "2"},
              {"SIMKO_COORDINATOR": "h:1", "SIMKO_NUM_PROCESSES": "2", "SIMKO_PROCESS_ID": "2"},
              {"SIMKO_COORDINATOR": "h:1", "SIMKO_NUM_PROCESSES": "x", "SIMKO_PROCESS_ID": "0"}):
    with pytest.raises(DistributedConfigError, match="SIMKO_"):
      initialize_kwargs(bad)


def test_main_reports_bad_distributed_env_cleanly():
  env = dict(os.environ, SIMKO_COORDINATOR="127.0.0.1:1", SIMKO_NUM_PROCESSES="2", PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, "-m", "simko_jax.main", "--config", "configs/tiny_random.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert "error: SIMKO_PROCESS_ID is not set" in out.stderr


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "worker":
  _worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
