"""`python -m simko_jax.export`: a trainer checkpoint -> a HF directory that transformers loads with the
same logits (1e-4, float32) and the same token ids; sharding + index; bf16; and every bad input ending
in one `error:` line (subprocess, no traceback) without touching an existing export."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from simko_jax.export import export
from simko_jax.models import Transformer, tiny_qwen2
from tests.eval.helpers import TEMPLATE, byte_tokenizer, tiny_model
from tests.eval.run_helpers import write_tiny_run
from tests.models.hf_helpers import left_padded_batch, torch_logits
from tests.cli import assert_one_line_error, run_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A trainer run (tiny Llama-3, byte tokenizer) with checkpoint steps 1 and 2 (different params)."""
  out = tmp_path_factory.mktemp("run")
  write_tiny_run(out, tiny_model(seed=1), byte_tokenizer(), steps=(1,))
  write_tiny_run(out, tiny_model(seed=2), byte_tokenizer(), steps=(2,))
  return str(out)


def _ours(model, tokens, mask):
  return np.asarray(model(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask)))


def test_export_loads_in_transformers_with_same_logits_and_ids(run_dir, tmp_path):
  import transformers
  info = export(run_dir, str(tmp_path / "hf"), step=1, max_shard_size="70KB", log=lambda s: None)
  out = tmp_path / "hf"
  assert info["step"] == 1 and len(info["files"]) > 1
  index = json.loads((out / "model.safetensors.index.json").read_text())
  assert sorted(set(index["weight_map"].values())) == sorted(info["files"])
  assert all((out / f).stat().st_size <= 70_000 + 4096 for f in info["files"])  # + header
  assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]  # staging dir renamed away
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval().float()
  ref = tiny_model(seed=1)  # what step 1 holds
  tokens, mask = left_padded_batch(ref.cfg.vocab_size, seed=7)
  real = mask.astype(bool)
  err = np.abs(_ours(ref, tokens, mask)[real] - torch_logits(hf, tokens, mask)[real]).max()
  assert err <= 1e-4, err
  tok, ours = transformers.AutoTokenizer.from_pretrained(str(out)), byte_tokenizer()
  for text in ("What is 12 * 7? Put it in \\boxed{}.", "<|im_start|>user\nhi<|im_end|>", "naïve ∑ 3"):
    assert tok(text, add_special_tokens=False).input_ids == ours.encode(text)
  assert tok.eos_token_id == 257 and tok.pad_token_id == 258
  assert tok.chat_template == TEMPLATE
  messages = [{"role": "user", "content": "2+2?"}]
  assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
      ours.apply_chat_template(messages)
  gen = json.loads((out / "generation_config.json").read_text())
  assert gen["eos_token_id"] == 257 and gen["temperature"] == 0.6 and gen["top_p"] == 0.95


def test_export_untied_bf16_single_file(tmp_path):
  import torch
  import transformers
  model = Transformer(tiny_qwen2(vocab_size=260, eos_token_id=257, pad_token_id=258), rngs=nnx.Rngs(3))
  write_tiny_run(tmp_path / "run", model, byte_tokenizer())
  export(str(tmp_path / "run"), str(tmp_path / "hf"), dtype="bfloat16", log=lambda s: None)
  assert sorted(p.name for p in (tmp_path / "hf").glob("*.safetensors")) == ["model.safetensors"]
  assert json.loads((tmp_path / "hf" / "config.json").read_text())["torch_dtype"] == "bfloat16"
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"))
  assert hf.lm_head.weight.dtype == torch.bfloat16
  want = np.asarray(model.lm_head.get_value()).T.astype(jnp.bfloat16).astype(np.float32)
  np.testing.assert_array_equal(hf.lm_head.weight.detach().float().numpy(), want)  # untied head, exact cast


def _cli(*args, timeout=120):
  return run_module("simko_jax.export", *args, timeout=timeout)


def test_cli_bad_input(run_dir, tmp_path):
  assert_one_line_error(_cli("--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")),
                         "does not exist")
  (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
  assert_one_line_error(_cli("--checkpoint", str(tmp_path / "empty_run"), "--out", str(tmp_path / "o")),
                         "no complete checkpoint")
  assert_one_line_error(_cli("--checkpoint", run_dir, "--out", str(tmp_path / "o"), "--step", "7"),
                         "step 7", "available steps [1, 2]")
  assert_one_line_error(_cli("--checkpoint", run_dir, "--out", str(tmp_path / "o"), "--bogus"),
                         "unrecognized arguments: --bogus")
  (tmp_path / "a_file").write_text("x")
  assert_one_line_error(_cli("--checkpoint", run_dir, "--out", str(tmp_path / "a_file" / "sub")),
                         "cannot write --out")
  existing = tmp_path / "existing"
  existing.mkdir()
  (existing / "keep.txt").write_text("precious")
  assert_one_line_error(_cli("--checkpoint", run_dir, "--out", str(existing)), "--overwrite")
  assert os.listdir(existing) == ["keep.txt"]
  assert not (tmp_path / "o").exists()


def test_cli_overwrite_replaces_whole_export(run_dir, tmp_path):
  out = tmp_path / "hf"
  out.mkdir()
  (out / "stale.txt").write_text("old")
  proc = _cli("--checkpoint", os.path.join(run_dir, "checkpoints"), "--out", str(out), "--overwrite")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "stale.txt" not in os.listdir(out) and (out / "config.json").exists()
  assert sorted(os.listdir(tmp_path)) == ["hf"]  # no staging or old copies left


def test_crash_mid_export_leaves_nothing(run_dir, tmp_path, monkeypatch):
  from simko_jax.models import hf_export

  def boom(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(hf_export, "generation_config", boom)  # after the weights, before config.json
  with pytest.raises(OSError, match="No space"):
    export(run_dir, str(tmp_path / "hf"), log=lambda s: None)
  assert os.listdir(tmp_path) == []
