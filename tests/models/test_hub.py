"""Hub ids through the real `huggingface_hub.snapshot_download` path, served by a local stand-in of the
Hub (tests/models/hub_server.py on 127.0.0.1): a model loaded by Hub id equals `load_pretrained` on the
same files, lands in `model.hub_cache_dir`, honours revisions, gets only the files it needs, reloads
from the cache offline, and every failure (404, gated, bad revision, offline / unreachable with
nothing cached) is one `ModelLoadError` line naming the id and the fix."""

import json
import os

from huggingface_hub import constants as hf_constants
import ml_collections
import numpy as np
import pytest
from flax import nnx

from simko_jax.config import default_config
from simko_jax.models import Transformer, hub, load_pretrained, save_hf, tiny_llama3, tiny_qwen2
from simko_jax.models.errors import ModelLoadError
from simko_jax.models.tokenizer import Tokenizer
from simko_jax.train.model_source import load_model_and_tokenizer
from tests.eval.helpers import byte_tokenizer
from tests.models.hub_server import HubServer, read_dir

VOCAB = dict(vocab_size=260, eos_token_id=257, pad_token_id=258)  # byte_tokenizer's ids
EXTRA = {"pytorch_model.bin": b"not needed", "original/consolidated.00.pth": b"not needed",
         "README.md": b"# tiny"}


def write_checkpoint(path, cfg, seed):
  """A HF checkpoint dir written by the project's own export, plus a tokenizer and unwanted files."""
  save_hf(Transformer(cfg, rngs=nnx.Rngs(seed)), str(path))
  tok = byte_tokenizer()
  tok._backend.save(str(path / "tokenizer.json"))
  (path / "tokenizer_config.json").write_text(json.dumps(
      {"chat_template": tok.chat_template, "eos_token": "<|im_end|>", "pad_token": "<pad>"}))
  for name, data in EXTRA.items():
    (path / name).parent.mkdir(exist_ok=True)
    (path / name).write_bytes(data)
  return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  root = tmp_path_factory.mktemp("ckpts")
  return {"a": write_checkpoint(root / "a", tiny_qwen2(**VOCAB), seed=0),
          "b": write_checkpoint(root / "b", tiny_qwen2(**VOCAB), seed=1),
          "gated": write_checkpoint(root / "gated", tiny_llama3(**VOCAB), seed=2)}


@pytest.fixture
def server(checkpoints, monkeypatch, tmp_path):
  """The stand-in Hub with org/tiny (main = a, tag v2 = b) and gated org/llama; online mode."""
  hub_server = HubServer()
  hub_server.shas = {"a": hub_server.add("org/tiny", read_dir(checkpoints["a"])),
                     "b": hub_server.add("org/tiny", read_dir(checkpoints["b"]), ref="v2")}
  hub_server.add("org/llama", read_dir(checkpoints["gated"]), gated_token="hf_granted")
  monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
  monkeypatch.delenv("HF_TOKEN", raising=False)
  monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
  monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # tests run with it set
  with hub_server:
    yield hub_server


def model_cfg(checkpoint, cache):
  cfg = ml_collections.ConfigDict(default_config().model.to_dict())
  cfg.checkpoint, cfg.hub_cache_dir = checkpoint, str(cache)
  return cfg


def logits(model):
  tokens = np.array([[72, 105, 33, 256, 10, 257]], np.int32)
  return np.asarray(model(tokens))


def test_hub_id_loads_what_load_pretrained_loads_into_the_configured_cache(server, checkpoints, tmp_path):
  cache = tmp_path / "hub_cache"
  model, tok, source = load_model_and_tokenizer(model_cfg("org/tiny", cache))
  ref = load_pretrained(str(checkpoints["a"]))
  np.testing.assert_array_equal(logits(model), logits(ref))
  ref_tok = Tokenizer.load(str(checkpoints["a"]))
  text = "<|im_start|>user\nhi 12+3?<|im_end|>"
  assert tok.encode(text) == ref_tok.encode(text) and tok.eos_id == ref_tok.eos_id == 257
  assert tok.chat_template == ref_tok.chat_template and source == "org/tiny"
  snapshot = cache / "models--org--tiny" / "snapshots" / server.shas["a"]
  assert sorted(os.listdir(snapshot)) == ["config.json", "model.safetensors", "tokenizer.json",
                                          "tokenizer_config.json"]
  fetched = sorted(r.split("/")[-1] for r in server.requests if r.startswith("GET /org/tiny/resolve/"))
  assert fetched == sorted(os.listdir(snapshot))  # never the .bin, the .pth, nor the README


def test_revision_pinning_by_tag_and_commit(server, checkpoints, tmp_path):
  cache = tmp_path / "hub_cache"
  v2, _, _ = load_model_and_tokenizer(model_cfg("org/tiny@v2", cache))
  by_sha, _, _ = load_model_and_tokenizer(model_cfg(f"org/tiny@{server.shas['a']}", cache))
  np.testing.assert_array_equal(logits(v2), logits(load_pretrained(str(checkpoints["b"]))))
  np.testing.assert_array_equal(logits(by_sha), logits(load_pretrained(str(checkpoints["a"]))))
  assert not np.allclose(logits(v2), logits(by_sha))
  assert (cache / "models--org--tiny" / "refs" / "v2").read_text() == server.shas["b"]


def test_offline_second_load_is_a_cache_hit(server, checkpoints, tmp_path, monkeypatch):
  cache = tmp_path / "hub_cache"
  first = hub.download(hub.HubId("org/tiny"), str(cache))
  server.stop()
  served = len(server.requests)
  monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
  model, _, _ = load_model_and_tokenizer(model_cfg("org/tiny", cache))
  np.testing.assert_array_equal(logits(model), logits(load_pretrained(str(checkpoints["a"]))))
  assert hub.download(hub.HubId("org/tiny"), str(cache)) == first and len(server.requests) == served
  with pytest.raises(ModelLoadError) as err:
    hub.download(hub.HubId("org/tiny", "v2"), str(cache))  # never downloaded
  assert str(err.value) == (f"Hub model 'org/tiny@v2' is not in the Hub cache {cache} and "
                            "HF_HUB_OFFLINE=1 forbids downloading it: run once without HF_HUB_OFFLINE "
                            "(with network access) to fill the cache, or set model.hub_cache_dir to a "
                            "cache that has it")


def test_unreachable_hub_uses_the_cache_or_says_so(server, tmp_path):
  cache = tmp_path / "hub_cache"
  first = hub.download(hub.HubId("org/tiny"), str(cache))
  server.stop()  # online mode, nothing listening any more
  assert hub.download(hub.HubId("org/tiny"), str(cache)) == first
  with pytest.raises(ModelLoadError, match=rf"^cannot download Hub model 'org/tiny@v2': the Hub at "
                                           rf"{server.url} is unreachable and the model is not in the "
                                           rf"cache {cache} \(.*\): check the network and HF_ENDPOINT"):
    hub.download(hub.HubId("org/tiny", "v2"), str(cache))


def test_missing_repo_revision_and_gated_repo_errors(server, tmp_path, monkeypatch):
  cache = str(tmp_path / "hub_cache")
  cases = {
      "org/nope": f"'org/nope' is not a local path and {server.url} has no model repo 'org/nope' "
                  "(repository not found): check the id (org/name) or the path; for a private repo set "
                  "HF_TOKEN",
      "org/tiny@v9": f"Hub model 'org/tiny' has no revision 'v9': use an existing branch, tag or commit "
                     f"hash (see {server.url}/org/tiny/commits/main)",
      "org/llama": f"Hub model 'org/llama' is gated and this machine has no access to it: accept its "
                   f"licence at {server.url}/org/llama (logged in), then set HF_TOKEN to a read token "
                   "of that account (or run `hf auth login`)",
  }
  for name, message in cases.items():
    with pytest.raises(ModelLoadError) as err:
      load_model_and_tokenizer(model_cfg(name, cache))
    assert str(err.value) == message and "\n" not in message
  snapshots = os.path.join(cache, "models--org--llama", "snapshots")
  assert not os.path.exists(snapshots) or not any(files for _, _, files in os.walk(snapshots))
  monkeypatch.setenv("HF_TOKEN", "hf_someone_else")
  with pytest.raises(ModelLoadError, match=r"^Hub model 'org/llama' is gated and the token in use "
                                           r"\(HF_TOKEN or `hf auth login`\) has no access to it: "):
    load_model_and_tokenizer(model_cfg("org/llama", cache))
  monkeypatch.setenv("HF_TOKEN", "hf_granted")  # huggingface_hub's usual token resolution
  model, _, _ = load_model_and_tokenizer(model_cfg("org/llama", cache))  # the server checks the token
  assert model.cfg.architecture == "LlamaForCausalLM"


@pytest.mark.parametrize("name, want", [
    ("Qwen/Qwen2.5-Math-7B", hub.HubId("Qwen/Qwen2.5-Math-7B")),
    ("meta-llama/Llama-3.2-3B-Instruct@0cb88a4f", hub.HubId("meta-llama/Llama-3.2-3B-Instruct",
                                                            "0cb88a4f")),
    ("org/name@refs/pr/1", hub.HubId("org/name", "refs/pr/1")),
    ("smollm2", None), ("random", None), ("/data/Qwen2.5-Math-7B", None), ("./org/name", None),
    ("a/b/c", None), ("org/model.gguf", None), ("org--x/name", None), ("org/na..me", None),
    ("org/name@", None), ("org/name@a@b", None),
])
def test_parse_hub_id(name, want):
  assert hub.parse_hub_id(name) == want


def test_an_existing_local_path_is_never_a_hub_id(tmp_path, monkeypatch):
  (tmp_path / "org" / "name").mkdir(parents=True)
  monkeypatch.chdir(tmp_path)
  assert hub.parse_hub_id("org/name") is None and hub.parse_hub_id("org/other") == hub.HubId("org/other")


@pytest.mark.parametrize("filename, fetched", [
    ("config.json", True), ("generation_config.json", True), ("tokenizer.json", True),
    ("tokenizer_config.json", True), ("tokenizer.model", True), ("model-00001-of-00004.safetensors", True),
    ("model.safetensors.index.json", True), ("chat_template.jinja", True),
    ("pytorch_model.bin", False), ("original/consolidated.00.pth", False),
    ("original/model.safetensors", False), ("model.gguf", False), ("README.md", False),
])
def test_only_the_needed_files_are_wanted(filename, fetched):
  assert hub.wanted(filename) == fetched


def test_prefetch_cli_fills_the_cache_for_an_offline_run(server, tmp_path):
  """`python -m simko_jax.models.hub <id>` downloads what a run reads; a bad id is one error line."""
  import subprocess
  import sys
  cache = tmp_path / "hub_cache"
  env = dict(os.environ, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "home"), JAX_PLATFORMS="cpu")
  ok = subprocess.run([sys.executable, "-m", "simko_jax.models.hub", "org/tiny@v2", "--cache_dir",
                       str(cache)], env=env, capture_output=True, text=True, timeout=120)
  assert ok.returncode == 0, ok.stderr
  assert ok.stdout.strip() == str(cache / "models--org--tiny" / "snapshots" / server.shas["b"])
  bad = subprocess.run([sys.executable, "-m", "simko_jax.models.hub", "org/missing", "--cache_dir",
                        str(cache)], env=env, capture_output=True, text=True, timeout=120)
  assert bad.returncode == 1 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1].startswith("error: 'org/missing' is not a local path and ")


def test_a_trained_runs_tokenizer_fetches_no_weights(server, checkpoints, monkeypatch, tmp_path):
  """`load_policy` of a run trained from a Hub id gets its tokenizer by id: tokenizer files only."""
  from simko_jax.train.model_source import resolve_tokenizer
  monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "default_cache"))
  monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "default_cache"))
  tok = resolve_tokenizer("org/tiny")
  assert tok.encode("hi<|im_end|>") == Tokenizer.load(str(checkpoints["a"])).encode("hi<|im_end|>")
  fetched = sorted(r.split("/")[-1] for r in server.requests if r.startswith("GET /org/tiny/resolve/"))
  assert fetched == ["config.json", "tokenizer.json", "tokenizer_config.json"]


def test_hub_cache_dir_must_be_a_local_directory():
  from simko_jax.config import ConfigError, validate
  cfg = default_config()
  cfg.model.hub_cache_dir = "/mnt/local_ssd/hf"
  validate(cfg)
  cfg.model.hub_cache_dir = "gs://bucket/hf"
  with pytest.raises(ConfigError, match=r"^config.model.hub_cache_dir = 'gs://bucket/hf' is invalid: allowed "
                                        r"'' \(huggingface_hub's default cache\) or a local directory path"):
    validate(cfg)


def test_processes_sharing_a_cache_download_each_file_once(server, checkpoints, tmp_path):
  """Two processes fetch the same id into one cache at once (as the JAX processes of one host do):
  huggingface_hub's per-file lock makes the second wait for the first's model.safetensors."""
  import subprocess
  import sys
  cache = tmp_path / "shared_cache"
  server.hold("model.safetensors", heads=2)  # the first download stalls until both processes asked
  env = dict(os.environ, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "home"), JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "simko_jax.models.hub", "org/tiny", "--cache_dir", str(cache)]
  procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=280) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  assert outs[0][0] == outs[1][0] and server.overlapped.is_set()
  gets = [r for r in server.requests if r.startswith("GET ") and r.endswith("/model.safetensors")]
  assert len(gets) == 1, server.requests
  snapshot = outs[0][0].strip()
  assert (open(os.path.join(snapshot, "model.safetensors"), "rb").read()
          == (checkpoints["a"] / "model.safetensors").read_bytes())


def test_evaluate_loads_a_hub_id(server, checkpoints, monkeypatch, tmp_path):
  """`python -m simko_jax.evaluate --checkpoint org/tiny@v2` path (`policy_source`, which evaluate and
  export load through): the default Hub cache, same logits."""
  from simko_jax.train import policy_source
  monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "default_cache"))
  source = policy_source.locate("org/tiny@v2")
  model, tok = policy_source.load_model(source), policy_source.load_tokenizer_of(source)
  np.testing.assert_array_equal(logits(model), logits(load_pretrained(str(checkpoints["b"]))))
  assert tok.eos_id == 257 and (tmp_path / "default_cache" / "models--org--tiny").is_dir()
