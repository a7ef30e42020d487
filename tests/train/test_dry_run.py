"""`--dry_run`: per-device parameter / optimizer bytes equal a hand calculation from the published
config.json numbers; the CLI prints the table for the 7B paper targets in seconds and warns on misfit."""

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name):
  sys.path.insert(0, ROOT)
  import importlib
  return importlib.import_module(f"configs.{name}").get_config()


def hand_param_bytes(v, d, f, layers, heads, kv, hd, tied, bias, fsdp):
  """fp32 bytes per device: every matrix has one hidden-size (D) dimension, split over fsdp (D % fsdp
  == 0 for these models); norms and biases have none and stay replicated (tensor = 1)."""
  matrices = v * d * (1 if tied else 2) + layers * (
      d * heads * hd + 2 * d * kv * hd + heads * hd * d + 3 * d * f)
  replicated = d + layers * 2 * d + (layers * (heads + 2 * kv) * hd if bias else 0)
  return (matrices // fsdp + replicated) * 4


@pytest.mark.parametrize("name,numbers", [
    ("qwen25_math7b_h100x8", dict(v=152064, d=3584, f=18944, layers=28, heads=28, kv=4, hd=128,
                                  tied=False, bias=True, fsdp=8)),
    ("llama32_3b_h100x8", dict(v=128256, d=3072, f=8192, layers=28, heads=24, kv=8, hd=128,
                               tied=True, bias=False, fsdp=8)),
])
def test_param_and_optimizer_bytes_match_hand_calculation(name, numbers):
  import jax
  from simko_jax.train import dry_run
  assert jax.device_count() == 8
  cfg = load(name)
  rep = dry_run.analyze(cfg, compile=False)
  want = hand_param_bytes(**numbers)
  assert rep["params_bytes"] == want
  # AdamW: mu and nu like the params (sharded the same way) + int32 step counters (Adam, schedule).
  assert 2 * want <= rep["opt_bytes"] <= 2 * want + 64
  assert rep["grad_bytes"] == want
  total = want * 8  # sanity: the model's size in published terms
  assert abs(rep["num_params"] - (7.616e9 if "qwen" in name else 3.213e9)) < 0.01e9, rep["num_params"]
  assert total > 0 and rep["mesh"] == (("data", 1), ("fsdp", 8), ("tensor", 1))
  # analytic FLOPs per update: 6 x (params - embedding lookup if untied) x tokens
  n = rep["num_params"] - (0 if numbers["tied"] else numbers["v"] * numbers["d"])
  assert rep["flops_update_analytic"] == 6 * n * 256 * 8 * 4096
  # sampler KV cache: 2 x layers x rows/device x slots x kv heads x head_dim x 2 bytes (bf16)
  rows = 64 * 8 / 8   # the target samples 64 prompts x 8 rollouts per call, over 8 devices
  assert rep["kv_cache_bytes"] == 2 * 28 * rows * (1024 + 3072) * numbers["kv"] * 128 * 2


def test_gemma3_1b_sizes_from_its_preset():
  """configs/gemma3_1b_h100x8.py: Gemma 3 1B's shape from `models.presets` (no download): 999,885,952
  params (google/gemma-3-1b-it's count; four norms per layer and the q/k norms are the only vectors), the
  tied embedding and every matrix split over fsdp 8, and a KV cache of all 26 layers' slots."""
  import jax
  from simko_jax.train import dry_run
  assert jax.device_count() == 8
  cfg = load("gemma3_1b_h100x8")
  assert cfg.model.checkpoint == "google/gemma-3-1b-it" and cfg.model.attention_impl == "xla"
  rep = dry_run.analyze(cfg, compile=False)
  v, d, f, layers, heads, hd = 262144, 1152, 6912, 26, 4, 256
  matrices = v * d + layers * (d * heads * hd + 2 * d * hd + heads * hd * d + 3 * d * f)
  vectors = d + layers * (4 * d + 2 * hd)
  assert rep["num_params"] == matrices + vectors == 999_885_952
  assert rep["params_bytes"] == (matrices // 8 + vectors) * 4
  assert rep["kv_cache_bytes"] == 2 * layers * 64 * (1024 + 3072) * 1 * hd * 2


def run_cli(config, *extra, timeout=280):
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("XLA_FLAGS", None)
  start = time.time()
  out = subprocess.run([sys.executable, "-m", "simko_jax.main", "--config", f"configs/{config}.py",
                        "--dry_run", *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
  assert out.returncode == 0, out.stderr[-3000:]
  # The sharding plan check: no tensor re-sharded by replicating it (see `parallel.spmd_check`).
  assert "Involuntary full rematerialization" not in out.stderr, out.stderr[-3000:]
  return out.stdout, time.time() - start


@pytest.mark.parametrize("config,devices,fits,extra", [
    ("qwen25_math7b_tpu_v5p_128", 64, True, ()),    # TPU pod mesh data=4 x fsdp=16
    ("llama32_3b_h100x16_slurm", 16, True, ()),     # GPU mesh data=2 x fsdp=8, two processes
    ("qwen25_math7b_h100x8", 8, True, ()),   # fits: the rollout is sampled in 64-prompt chunks
    # all 1024 x 8 responses in one sampler call: ~240 GB of KV cache per H100, which must warn
    ("qwen25_math7b_h100x8", 8, False, ("--config.rollout.sample_chunk_prompts=0",)),
])
def test_cli_dry_run_prints_table(config, devices, fits, extra):
  stdout, seconds = run_cli(config, *extra)
  print(stdout)
  assert seconds < 300
  assert f"on {devices} x" in stdout
  assert ("3.213B params" if "llama" in config else "7.616B params") in stdout
  for row in ("parameters", "optimizer state", "activations", "logits chunk", "sampler KV cache",
              "temporaries", "per update, analytic 6*N*tokens", "XLA cost_analysis"):
    assert row in stdout, row
  assert ("fits: yes" in stdout) == fits
  assert ("WARNING" in stdout) == (not fits)


def test_hub_ids_resolve_their_architecture_without_downloading(tmp_path, monkeypatch):
  """Paper configs name Hub ids: a preset by the id's last component (revision ignored), else the
  config.json of a pre-filled Hub cache (huggingface_hub's layout); never a request."""
  import json

  import ml_collections

  from simko_jax.config import ConfigError, default_config
  from simko_jax.models.presets import LLAMA32_3B
  from simko_jax.train import dry_run
  monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any request would fail
  model = ml_collections.ConfigDict(default_config().model.to_dict())
  assert load("paper_llama32_3b_simko").model.checkpoint == "meta-llama/Llama-3.2-3B-Instruct"
  model.checkpoint = "meta-llama/Llama-3.2-3B-Instruct@0123abc"
  cfg = dry_run.model_config(model)
  assert (cfg.num_layers, cfg.hidden_size, cfg.vocab_size) == (28, 3072, 128256)
  snapshot = tmp_path / "models--org--tiny" / "snapshots" / ("a" * 40)
  snapshot.mkdir(parents=True)
  (tmp_path / "models--org--tiny" / "refs").mkdir()
  (tmp_path / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
  (snapshot / "config.json").write_text(json.dumps({**LLAMA32_3B, "num_hidden_layers": 3}))
  model.checkpoint, model.hub_cache_dir = "org/tiny", str(tmp_path)
  assert dry_run.model_config(model).num_layers == 3
  model.checkpoint = "org/not-cached"
  with pytest.raises(ConfigError, match="download it once so its config.json is in the Hub cache"):
    dry_run.model_config(model)


def small_mesh_config(data, fsdp):
  """tiny_random on 8 fake devices with the pod targets' mesh structure (data x fsdp), 2 micro-batches."""
  cfg = load("tiny_random")
  cfg.target.num_devices = 8
  cfg.train.mesh_data, cfg.train.mesh_fsdp = data, fsdp
  cfg.rollout.prompts_per_step = cfg.algo.mini_batch_prompts = 4
  cfg.algo.micro_batch_size = 8
  return cfg


@pytest.mark.parametrize("data,fsdp", [(2, 4), (1, 8)])
def test_small_pod_mesh_compiles_without_involuntary_remat(data, fsdp):
  from simko_jax.train import dry_run
  rep = dry_run.analyze(small_mesh_config(data, fsdp))
  assert rep["mesh"] == (("data", data), ("fsdp", fsdp), ("tensor", 1)) and rep["micro_batches"] == 2
  assert rep["spmd_remats"] == []


def test_dry_run_fails_on_the_old_embedding_layout(capsys):
  """Gathering the embedding straight into the ("data", "fsdp") row layout (the layout before the
  `lookup_batch` rule) makes XLA replicate the lookup's f32 gradient: the dry run must say so and fail."""
  from simko_jax.parallel import DEFAULT_RULES, use_rules
  from simko_jax.train import dry_run
  old = tuple((k, ("data", "fsdp")) if k == "lookup_batch" else (k, v) for k, v in DEFAULT_RULES)
  with use_rules(old), pytest.raises(dry_run.ShardingPlanError, match=r"replicate 1 tensor.*f32\[1,"):
    dry_run.main(small_mesh_config(2, 4))
  out = capsys.readouterr().out
  assert "FAILED sharding plan: XLA replicates f32[1," in out and "from {devices=[8,1,1]<=[8]} to" in out
