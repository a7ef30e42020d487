"""Bad model sources through the CLIs (`simko_jax.main`, `simko_jax.evaluate`): a corrupt .gguf, an
unparsable config.json, a truncated .safetensors shard, a Hub id that does not exist, a gated Hub repo
without a token, and a Hub id that is not cached in offline mode each end the run with exactly one
`error: ...` line (the last one), exit code 1 and no traceback, before any training step."""

import os
import shutil
import subprocess
import sys

import pytest
from flax import nnx

from simko_jax.models import Transformer, save_hf, tiny_qwen2
from tests.eval.helpers import byte_tokenizer
from tests.faults import harness
from tests.models.hub_server import HubServer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """{case: checkpoint path} of damaged local checkpoints."""
  root = tmp_path_factory.mktemp("bad_models")
  good = root / "good"
  save_hf(Transformer(tiny_qwen2(vocab_size=260), rngs=nnx.Rngs(0)), str(good))
  byte_tokenizer()._backend.save(str(good / "tokenizer.json"))
  (root / "corrupt.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 8)
  bad_json = shutil.copytree(good, root / "bad_config")
  (bad_json / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"], "vocab_size": 2')
  truncated = shutil.copytree(good, root / "truncated")
  data = (truncated / "model.safetensors").read_bytes()
  (truncated / "model.safetensors").write_bytes(data[:len(data) - 1000])
  return {"gguf": root / "corrupt.gguf", "config": bad_json, "safetensors": truncated}


@pytest.fixture(scope="module")
def hub_server():
  with HubServer() as server:
    server.add("org/gated-model", {"config.json": b"{}", "model.safetensors": b"x"}, gated_token="hf_ok")
    yield server


def run_cli(module, checkpoint, tmp_path, extra_env=()):
  env = {**harness.env(), "HF_HOME": str(tmp_path / "hf_home"),  # no token file of this machine
         "HF_HUB_CACHE": str(tmp_path / "hub_cache"), **dict(extra_env)}
  env.pop("HF_TOKEN", None)
  if module == "simko_jax.main":
    args = ["--config", "configs/tiny_random.py", f"--config.model.checkpoint={checkpoint}",
            f"--config.out_dir={tmp_path / 'run'}"]
  else:
    args = ["--config", "configs/eval_quick.py", "--checkpoint", str(checkpoint),
            f"--config.out_dir={tmp_path / 'eval'}"]
  out = subprocess.run([sys.executable, "-m", module, *args], cwd=harness.ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  text = out.stdout + out.stderr
  errors = [line for line in text.splitlines() if line.startswith("error:")]
  assert out.returncode == 1 and "Traceback" not in text, text[-3000:]
  assert len(errors) == 1 and out.stderr.strip().splitlines()[-1] == errors[0], text[-3000:]
  assert not (tmp_path / "run" / "checkpoints").exists() or not os.listdir(tmp_path / "run" / "checkpoints")
  return errors[0]


@pytest.mark.parametrize("case, message", [
    ("gguf", "is not a readable GGUF file (ValueError: "),
    ("config", "config.json is not valid JSON ("),
    ("safetensors", "model.safetensors is not a readable safetensors file (Error while deserializing "
                    "header: incomplete metadata, file not fully covered): it is truncated or damaged"),
])
def test_main_damaged_model_file(files, tmp_path, case, message):
  line = run_cli("simko_jax.main", files[case], tmp_path)
  assert line.startswith(f"error: {files[case]}") and message in line, line


def test_evaluate_corrupt_gguf(files, tmp_path):
  line = run_cli("simko_jax.evaluate", files["gguf"], tmp_path)
  assert line.startswith(f"error: {files['gguf']} is not a readable GGUF file"), line


@pytest.mark.parametrize("module", ["simko_jax.main", "simko_jax.evaluate"])
def test_hub_id_that_does_not_exist(hub_server, tmp_path, module):
  line = run_cli(module, "no-such-org/no-such-model", tmp_path,
                 {"HF_ENDPOINT": hub_server.url, "HF_HUB_OFFLINE": "0"})
  assert line == (f"error: 'no-such-org/no-such-model' is not a local path and {hub_server.url} has no "
                  "model repo 'no-such-org/no-such-model' (repository not found): check the id "
                  "(org/name) or the path; for a private repo set HF_TOKEN")


def test_gated_hub_repo_without_token(hub_server, tmp_path):
  line = run_cli("simko_jax.main", "org/gated-model", tmp_path,
                 {"HF_ENDPOINT": hub_server.url, "HF_HUB_OFFLINE": "0"})
  assert line == (f"error: Hub model 'org/gated-model' is gated and this machine has no access to it: "
                  f"accept its licence at {hub_server.url}/org/gated-model (logged in), then set HF_TOKEN "
                  "to a read token of that account (or run `hf auth login`)")


def test_hub_id_offline_and_not_cached(tmp_path):
  line = run_cli("simko_jax.main", "org/never-downloaded@v1", tmp_path, {"HF_HUB_OFFLINE": "1"})
  assert line == (f"error: Hub model 'org/never-downloaded@v1' is not in the Hub cache "
                  f"{tmp_path / 'hub_cache'} and HF_HUB_OFFLINE=1 forbids downloading it: run once "
                  "without HF_HUB_OFFLINE (with network access) to fill the cache, or set "
                  "model.hub_cache_dir to a cache that has it")
