"""Damaged or incomplete model files raise `ModelLoadError` with one line naming the file, the problem
and the fix: corrupt / truncated .gguf, unparsable or incomplete config.json, truncated .safetensors
shard, missing or damaged tokenizer files, weights that do not match config.json."""

import json
import os
import shutil

import pytest
from flax import nnx

from simko_jax.models import Transformer, load_pretrained, save_hf, smollm2_gguf_path, tiny_qwen2
from simko_jax.models.errors import MissingModelFileError, ModelLoadError, one_line
from simko_jax.models.tokenizer import Tokenizer
from tests.eval.helpers import byte_tokenizer


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
  """A valid tiny HF checkpoint dir (config.json, model.safetensors, tokenizer.json)."""
  path = tmp_path_factory.mktemp("good") / "ckpt"
  save_hf(Transformer(tiny_qwen2(vocab_size=260), rngs=nnx.Rngs(0)), str(path))
  byte_tokenizer()._backend.save(str(path / "tokenizer.json"))
  return path


def damaged_copy(good_dir, tmp_path, name, damage):
  """A copy of `good_dir` with `damage(path_of_name)` applied to file `name`."""
  path = tmp_path / "ckpt"
  shutil.copytree(good_dir, path)
  damage(path / name)
  return path


def expect_one_line(fn, *pattern_parts):
  with pytest.raises(ModelLoadError) as err:
    fn()
  message = str(err.value)
  assert "\n" not in message, message
  for part in pattern_parts:
    assert part in message, (part, message)
  return err.value


def test_corrupt_and_truncated_gguf(tmp_path):
  garbage = tmp_path / "garbage.gguf"
  garbage.write_bytes(b"GGUF" + bytes(range(256)) * 4)
  truncated = tmp_path / "truncated.gguf"
  with open(smollm2_gguf_path(), "rb") as f:
    truncated.write_bytes(f.read(3_000_000))  # header and metadata intact, tensor data cut off
  for path in (garbage, truncated):
    expect_one_line(lambda: load_pretrained(str(path)), f"{path} is not a readable GGUF file",
                    "truncated or corrupt; re-download or re-convert it")
    expect_one_line(lambda: Tokenizer.load(str(path)), f"{path} is not a readable GGUF file")


@pytest.mark.parametrize("text, problem", [
    ('{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,', "is not valid JSON"),
    ("\x00\x01binary", "is not valid JSON"),
    ('{"architectures": ["Qwen2ForCausalLM"], "vocab_size": 260}',
     "is incomplete: it lacks hidden_size, num_hidden_layers, num_attention_heads, intermediate_size"),
    ('["a list"]', "is incomplete"),
])
def test_unparsable_or_incomplete_config_json(good_dir, tmp_path, text, problem):
  path = damaged_copy(good_dir, tmp_path, "config.json", lambda p: p.write_text(text))
  expect_one_line(lambda: load_pretrained(str(path)), f"{path / 'config.json'} {problem}",
                  "re-download or re-export the checkpoint")


def test_truncated_safetensors_shard(good_dir, tmp_path):
  def truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[:len(data) // 2])
  path = damaged_copy(good_dir, tmp_path, "model.safetensors", truncate)
  expect_one_line(lambda: load_pretrained(str(path)),
                  f"{path / 'model.safetensors'} is not a readable safetensors file",
                  "truncated or damaged")


def test_weights_that_do_not_match_config_json(good_dir, tmp_path):
  def grow(p):
    raw = json.loads(p.read_text())
    raw["intermediate_size"] = 100
    p.write_text(json.dumps(raw))
  path = damaged_copy(good_dir, tmp_path, "config.json", grow)
  expect_one_line(lambda: load_pretrained(str(path)), "mlp.gate_proj.weight", "has shape (128, 64)",
                  "weights and config.json do not match")


def test_unsupported_architecture_names_the_config_file(good_dir, tmp_path):
  def gpt2(p):
    p.write_text(json.dumps({**json.loads(p.read_text()), "architectures": ["GPT2LMHeadModel"]}))
  path = damaged_copy(good_dir, tmp_path, "config.json", gpt2)
  expect_one_line(lambda: load_pretrained(str(path)), f"{path / 'config.json'}: unsupported architecture")


def test_missing_and_damaged_tokenizer_files(good_dir, tmp_path):
  path = damaged_copy(good_dir, tmp_path, "tokenizer.json", os.remove)
  err = expect_one_line(lambda: Tokenizer.load(str(path)), f"no tokenizer.json in {str(path)!r}",
                        "copy the model's tokenizer.json")
  assert isinstance(err, (MissingModelFileError, FileNotFoundError))
  (path / "tokenizer.json").write_text('{"version": "1.0", "model": ')
  expect_one_line(lambda: Tokenizer.load(str(path)), "tokenizer.json is not a readable tokenizer")
  shutil.copy(good_dir / "tokenizer.json", path / "tokenizer.json")
  (path / "tokenizer_config.json").write_text("{oops")
  expect_one_line(lambda: Tokenizer.load(str(path)), "tokenizer_config.json is not valid JSON")


def test_one_line():
  assert one_line(ValueError("a\n  b\tc")) == "a b c"
  assert one_line(ValueError("")) == "ValueError"
  assert one_line(ValueError("x" * 50), limit=10) == "xxxxxxx..."
