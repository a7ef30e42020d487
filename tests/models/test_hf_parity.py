"""Parity of our Transformer with transformers (torch CPU) on tiny random Llama-3 / Qwen2 / Qwen3."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from simko_jax.models import load_pretrained, save_hf
from tests.models.hf_helpers import left_padded_batch, tiny_hf_model, torch_logits


def logits_and_error(model, hf, tokens, mask):
  """Our float32 logits [B, T, V] and their max |difference| from transformers' at real tokens."""
  ours = np.asarray(model(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask)))
  ref = torch_logits(hf, tokens, mask)
  real = mask.astype(bool)
  return ours, np.abs(ours[real] - ref[real]).max()


@pytest.mark.parametrize("arch", ["llama3", "qwen2", "qwen3"])
def test_logits_match_transformers(arch, tmp_path):
  hf = tiny_hf_model(arch)
  hf.save_pretrained(tmp_path)
  model = load_pretrained(str(tmp_path))
  cfg = model.cfg
  assert cfg.tie_word_embeddings == (arch == "llama3")
  assert cfg.attention_bias == (arch == "qwen2") and cfg.qk_norm == (arch == "qwen3")
  if arch == "llama3":
    assert cfg.rope_scaling["factor"] == 8.0
  tokens, mask = left_padded_batch(cfg.vocab_size)
  ours, err = logits_and_error(model, hf, tokens, mask)
  assert err <= 1e-4, err
  # hidden_states @ unembedding == logits
  h = model.hidden_states(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask))
  np.testing.assert_allclose(np.asarray(h @ model.unembedding()), ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama3", "qwen2", "qwen3"])
def test_export_roundtrip_transformers(arch, tmp_path):
  import transformers
  hf = tiny_hf_model(arch, seed=1)
  hf.save_pretrained(tmp_path / "src")
  model = load_pretrained(str(tmp_path / "src"))
  cfg = model.cfg
  save_hf(model, str(tmp_path / "out"))
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval().float()
  assert type(reloaded) is type(hf)
  tokens, mask = left_padded_batch(cfg.vocab_size, seed=3)
  np.testing.assert_array_equal(torch_logits(reloaded, tokens, mask), torch_logits(hf, tokens, mask))
  # ours -> HF -> ours is exact too
  again = load_pretrained(str(tmp_path / "out"))
  cfg2 = again.cfg
  assert cfg2 == cfg
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(again, nnx.Param)),
               nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_load_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_pretrained(str(tmp_path / "nope"))
  (tmp_path / "d").mkdir()
  with pytest.raises(FileNotFoundError, match="config.json"):
    load_pretrained(str(tmp_path / "d"))
  hf = tiny_hf_model("qwen2")
  hf.save_pretrained(tmp_path / "m")
  cfg_path = tmp_path / "m" / "config.json"
  raw = json.loads(cfg_path.read_text())
  raw["architectures"] = ["GPT2LMHeadModel"]
  cfg_path.write_text(json.dumps(raw))
  with pytest.raises(ValueError, match="unsupported architecture"):
    load_pretrained(str(tmp_path / "m"))
  raw["architectures"] = ["Qwen2ForCausalLM"]
  raw["intermediate_size"] = 100
  cfg_path.write_text(json.dumps(raw))
  with pytest.raises(ValueError, match="mlp.gate_proj.weight"):
    load_pretrained(str(tmp_path / "m"))
  os.remove(tmp_path / "m" / "model.safetensors")
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    load_pretrained(str(tmp_path / "m"))


def test_sharded_safetensors_index(tmp_path):
  hf = tiny_hf_model("qwen3", seed=2)
  hf.save_pretrained(tmp_path, max_shard_size="100KB")
  assert (tmp_path / "model.safetensors.index.json").exists()
  model = load_pretrained(str(tmp_path))
  cfg = model.cfg
  tokens, mask = left_padded_batch(cfg.vocab_size, seed=4)
  ours = np.asarray(model(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask)))
  real = mask.astype(bool)
  assert np.abs(ours[real] - torch_logits(hf, tokens, mask)[real]).max() <= 1e-4


def test_bf16_compute_close_to_fp32(tmp_path):
  hf = tiny_hf_model("llama3", seed=3)
  hf.save_pretrained(tmp_path)
  m32 = load_pretrained(str(tmp_path))
  m16 = load_pretrained(str(tmp_path), dtype=jnp.bfloat16)
  cfg16 = m16.cfg
  assert m16.layers.w_qkv.get_value().dtype == jnp.bfloat16
  tokens, mask = left_padded_batch(cfg16.vocab_size, seed=5)
  a = np.asarray(m32(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask)))
  b = m16(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask))
  assert b.dtype == jnp.float32
  assert m16.hidden_states(jnp.asarray(tokens)).dtype == jnp.bfloat16
  real = mask.astype(bool)
  assert np.abs(a[real] - np.asarray(b)[real]).max() < 0.05 * np.abs(a[real]).max()


# ------------------------------------------------------------------------------------------ Gemma
@pytest.mark.parametrize("version", [2, 3])
def test_gemma_logits_match_transformers(version, tmp_path):
  """Tiny Gemma 2 / 3 with every option on (`gemma_helpers`): 23 tokens against a sliding window of 4,
  left-padded rows; logits within 1e-4 of transformers, and `hidden_states @ unembedding`, soft-capped,
  is the same forward."""
  from simko_jax.models.layers import soft_cap
  from tests.models.gemma_helpers import SLIDING_WINDOW, tiny_gemma_model
  hf = tiny_gemma_model(version)
  hf.save_pretrained(tmp_path)
  model = load_pretrained(str(tmp_path))
  cfg = model.cfg
  assert cfg.architecture == f"Gemma{version}ForCausalLM" and cfg.sliding_window == SLIDING_WINDOW
  assert cfg.post_norms and cfg.norm_offset == 1.0 and cfg.qk_norm == (version == 3)
  tokens, mask = left_padded_batch(cfg.vocab_size, lengths=(23, 17, 5), total=23, seed=version)
  ours, err = logits_and_error(model, hf, tokens, mask)
  assert err <= 1e-4, err
  h = model.hidden_states(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask))
  capped = soft_cap(h @ model.unembedding(), cfg.final_logit_softcapping)
  np.testing.assert_allclose(np.asarray(capped), ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("version", [2, 3])
def test_gemma_export_roundtrip_transformers(version, tmp_path):
  """Gemma export: transformers loads it to the same class and bit-equal logits; importing it back gives
  the same config and params."""
  import transformers
  from tests.models.gemma_helpers import tiny_gemma_model
  hf = tiny_gemma_model(version, seed=1)
  hf.save_pretrained(tmp_path / "src")
  model = load_pretrained(str(tmp_path / "src"))
  save_hf(model, str(tmp_path / "out"))
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval().float()
  assert type(reloaded) is type(hf)
  tokens, mask = left_padded_batch(model.cfg.vocab_size, lengths=(13, 9, 2), total=13, seed=3)
  np.testing.assert_array_equal(torch_logits(reloaded, tokens, mask), torch_logits(hf, tokens, mask))
  again = load_pretrained(str(tmp_path / "out"))
  assert again.cfg == model.cfg
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(again, nnx.Param)),
               nnx.to_pure_dict(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("prefix", ["model.language_model.", "language_model.model."])
def test_gemma3_multimodal_checkpoint_text_part(prefix, tmp_path):
  """A Gemma3ForConditionalGeneration checkpoint (config under text_config, text tensors under the
  multimodal prefix of transformers 5 or 4, a vision tensor beside them): its text model loads and
  gives the text-only model's logits."""
  from safetensors.numpy import load_file, save_file
  from tests.models.gemma_helpers import tiny_gemma_model
  hf = tiny_gemma_model(3, seed=2)
  hf.save_pretrained(tmp_path / "text")
  text_cfg = json.loads((tmp_path / "text" / "config.json").read_text())
  tensors = load_file(str(tmp_path / "text" / "model.safetensors"))
  mm = {prefix + k[len("model."):]: v for k, v in tensors.items()}
  mm["model.vision_tower.patch.weight"] = np.zeros((2, 2), np.float32)
  (tmp_path / "mm").mkdir()
  save_file(mm, str(tmp_path / "mm" / "model.safetensors"), metadata={"format": "pt"})
  (tmp_path / "mm" / "config.json").write_text(json.dumps({
      "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
      "text_config": text_cfg, "vision_config": {"model_type": "siglip_vision_model"}}))
  model = load_pretrained(str(tmp_path / "mm"))
  tokens, mask = left_padded_batch(model.cfg.vocab_size, lengths=(9, 4), total=9, seed=5)
  ours = np.asarray(model(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask)))
  real = mask.astype(bool)
  assert np.abs(ours[real] - torch_logits(hf, tokens, mask)[real]).max() <= 1e-4


@pytest.mark.parametrize("field,value", [("hidden_activation", "relu"), ("attention_bias", True),
                                         ("use_bidirectional_attention", True)])
def test_gemma_unsupported_option_fails_at_load_naming_the_field(field, value, tmp_path):
  from simko_jax.models.errors import ModelLoadError
  from tests.models.gemma_helpers import tiny_gemma_model
  tiny_gemma_model(3).save_pretrained(tmp_path)
  cfg_path = tmp_path / "config.json"
  raw = json.loads(cfg_path.read_text())
  raw[field] = value
  cfg_path.write_text(json.dumps(raw))
  with pytest.raises(ModelLoadError, match=rf"config.json: Gemma config field {field} = .* is not supported") as err:
    load_pretrained(str(tmp_path))
  assert "\n" not in str(err.value)
