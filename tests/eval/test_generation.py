"""Evaluation at scale: the same samples on one device, on a (2, 2, 2) mesh of 8 CPU devices with the
params really sharded, and as two `jax.distributed` processes x 4 devices running the evaluate CLI
(each samples its rows of every batch, process 0 verifies and writes)."""

import json
import os
import sys

import jax
import pytest

from simko_jax.evaluate import evaluate, load_for_eval
from simko_jax.rewards.pool import VerifierPool
from simko_jax.train import policy_source
from tests.eval.helpers import byte_tokenizer, tiny_model
from tests.eval.run_helpers import write_tiny_run
from tests.multiprocess import run_processes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# 8 GSM8K problems in batches of 4 (= data x fsdp of the (2, 2, 2) mesh, so all runs cut the same
# batches and draw the same per-batch seeds); max_new_tokens comes from the run config (6).
SETTINGS = dict(benchmarks="gsm8k", num_problems=8, num_samples=2, batch_problems=4, max_prompt_len=48,
                num_workers=1, progress=False)


def _eval_config(**extra):
  sys.path.insert(0, ROOT)
  from configs.eval_default import get_config
  cfg = get_config()
  cfg.update(dict(SETTINGS, **extra))
  return cfg


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("run")
  write_tiny_run(out, tiny_model(seed=4), byte_tokenizer(), eval_max_new_tokens=6)
  return str(out)


@pytest.fixture(scope="module")
def pool():
  with VerifierPool(num_workers=1, timeout_s=10.0, default_source="math") as p:
    yield p


@pytest.fixture(scope="module")
def reference(run_dir, tmp_path_factory, pool):
  """generations.jsonl of a single-process, single-device evaluation."""
  source = policy_source.locate(run_dir)
  model = policy_source.load_model(source)
  assert len(model.layers.w_qkv.get_value().sharding.device_set) == 1
  out = tmp_path_factory.mktemp("ref")
  evaluate(model, policy_source.load_tokenizer_of(source), None, _eval_config(max_new_tokens=6),
           str(out), pool=pool, log=lambda s: None)
  lines = (out / "gsm8k" / "generations.jsonl").read_text().splitlines()
  assert len(lines) == 8
  return lines


def test_sharded_mesh_matches_one_device(run_dir, reference, tmp_path, pool):
  assert jax.device_count() == 8
  cfg = _eval_config(mesh_data=2, mesh_fsdp=2, mesh_tensor=2)
  model, tok, mesh, meta = load_for_eval(run_dir, cfg, log=lambda s: None)
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  assert cfg.max_new_tokens == 6 and meta["max_new_tokens_from"] == "run config eval.max_new_tokens"
  w_qkv = model.layers.w_qkv.get_value()  # [L, D, K, Q+2, Dh]: D over fsdp, kv heads over tensor
  assert w_qkv.sharding.spec[1:3] == ("fsdp", "tensor"), w_qkv.sharding.spec
  assert w_qkv.addressable_shards[0].data.shape == (w_qkv.shape[0], w_qkv.shape[1] // 2, w_qkv.shape[2] // 2,
                                                     *w_qkv.shape[3:])
  assert model.embed.get_value().addressable_shards[0].data.size * 4 == model.embed.get_value().size
  evaluate(model, tok, None, cfg, str(tmp_path), mesh=mesh, pool=pool, log=lambda s: None)
  assert (tmp_path / "gsm8k" / "generations.jsonl").read_text().splitlines() == reference


def test_two_processes_match_single_process(run_dir, reference, tmp_path):
  out = tmp_path / "out"
  args = [f"--config.{k}={v}" for k, v in SETTINGS.items()] + [
      "--config.mesh_data=2", "--config.mesh_fsdp=2", "--config.mesh_tensor=2", f"--config.out_dir={out}"]
  run_processes("simko_jax.evaluate", ["--config", "configs/eval_default.py", "--checkpoint", run_dir, *args],
                tmp_path / "worker", base_env=dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest"))
  assert (out / "gsm8k" / "generations.jsonl").read_text().splitlines() == reference
  results = json.loads((out / "results.json").read_text())
  assert results["metadata"]["num_processes"] == 2 and results["run"]["sampled_problems"] == {"gsm8k": 8}
  assert "| gsm8k |" in (tmp_path / "worker0.log").read_text()
  assert "| gsm8k |" not in (tmp_path / "worker1.log").read_text()  # process 0 alone reports
