"""`gemma_options`: Gemma 2 / 3 config.json options (both transformers layouts) checked against
transformers' own config classes; unsupported options fail naming the field; the tiny checkpoints of
`gemma_helpers` load in transformers with our tokenizer."""

import pytest

from simko_jax.models.gemma_config import gemma_options, is_gemma
from tests.models.gemma_helpers import SLIDING_WINDOW, read_config, write_tiny_gemma

# transformers-4 layout configs as on the Hub (google/gemma-2-2b-it, google/gemma-3-1b-it, and the text
# part of google/gemma-3-4b-it, whose text_config leaves heads / head_dim / vocab to the defaults).
GEMMA2_2B = {"architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "attn_logit_softcapping": 50.0,
             "bos_token_id": 2, "eos_token_id": [1, 107], "final_logit_softcapping": 30.0, "head_dim": 256,
             "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304,
             "intermediate_size": 9216, "max_position_embeddings": 8192, "model_type": "gemma2",
             "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
             "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
             "sliding_window": 4096, "vocab_size": 256000}
GEMMA3_1B = {"architectures": ["Gemma3ForCausalLM"], "attention_bias": False, "attn_logit_softcapping": None,
             "bos_token_id": 2, "eos_token_id": [1, 106], "final_logit_softcapping": None, "head_dim": 256,
             "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "intermediate_size": 6912,
             "max_position_embeddings": 32768, "model_type": "gemma3_text", "num_attention_heads": 4,
             "num_hidden_layers": 26, "num_key_value_heads": 1, "pad_token_id": 0, "query_pre_attn_scalar": 256,
             "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000, "rope_scaling": None, "rope_theta": 1000000,
             "sliding_window": 512, "sliding_window_pattern": 6, "vocab_size": 262144}
GEMMA3_4B = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
             "eos_token_id": [1, 106], "text_config": {
                 "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                 "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                 "sliding_window": 1024}, "vision_config": {"model_type": "siglip_vision_model"}}


def _reference(hf: dict) -> dict:
  """transformers' reading of the same dict: layer types and per-layer-type RoPE parameters."""
  import transformers
  text = dict(hf.get("text_config") or hf)
  text.pop("model_type", None)
  cls = transformers.Gemma2Config if hf["model_type"] == "gemma2" else transformers.Gemma3TextConfig
  ref = cls(**{k: v for k, v in text.items() if k != "architectures"})
  rope = ref.rope_parameters
  per_type = {t: rope for t in ("sliding_attention", "full_attention")} if "rope_theta" in rope else rope
  return {"layer_types": list(ref.layer_types), "num_attention_heads": ref.num_attention_heads,
          "head_dim": ref.head_dim, "vocab_size": ref.vocab_size,
          "query_pre_attn_scalar": float(ref.query_pre_attn_scalar), "sliding_window": ref.sliding_window,
          "attn_logit_softcapping": ref.attn_logit_softcapping,
          "final_logit_softcapping": ref.final_logit_softcapping,
          "rope_theta": {t: float(p["rope_theta"]) for t, p in per_type.items()},
          "rope_types": {t: p.get("rope_type", "default") for t, p in per_type.items()}}


def _compare(opts: dict, ref: dict) -> None:
  for key in ("layer_types", "num_attention_heads", "head_dim", "vocab_size", "query_pre_attn_scalar",
              "sliding_window", "attn_logit_softcapping", "final_logit_softcapping", "rope_theta"):
    assert opts[key] == ref[key], (key, opts[key], ref[key])
  assert {t: (s or {}).get("rope_type", "default") for t, s in opts["rope_scaling"].items()} == ref["rope_types"]


@pytest.mark.parametrize("hf", [GEMMA2_2B, GEMMA3_1B, GEMMA3_4B], ids=["gemma2-2b", "gemma3-1b", "gemma3-4b"])
def test_hub_layout_matches_transformers(hf):
  opts = gemma_options(hf)
  _compare(opts, _reference(hf))
  assert is_gemma(hf) and opts["tie_word_embeddings"] and opts["hidden_activation"] == "gelu_pytorch_tanh"
  assert opts["qk_norm"] == (hf["model_type"] != "gemma2")
  if hf is GEMMA3_1B:
    assert opts["layer_types"].count("full_attention") == 4 and opts["layer_types"][5] == "full_attention"
    assert opts["rope_theta"] == {"sliding_attention": 10000.0, "full_attention": 1000000.0}
  if hf is GEMMA3_4B:
    assert opts["rope_scaling"]["full_attention"] == {"rope_type": "linear", "factor": 8.0}
    assert opts["rope_scaling"]["sliding_attention"] is None and opts["eos_token_id"] == [1, 106]


@pytest.mark.parametrize("version", [2, 3])
def test_tiny_checkpoint_options_and_loading(tmp_path, version):
  import torch
  import transformers

  from simko_jax.models.tokenizer import Tokenizer
  path = write_tiny_gemma(tmp_path / f"gemma{version}", version)
  hf = read_config(path)
  opts = gemma_options(hf)
  _compare(opts, _reference(hf))
  assert (opts["attn_logit_softcapping"], opts["final_logit_softcapping"]) == (5.0, 3.0)
  assert opts["query_pre_attn_scalar"] == 32.0 != opts["head_dim"]
  assert opts["sliding_window"] == SLIDING_WINDOW and set(opts["layer_types"]) == {"sliding_attention",
                                                                                   "full_attention"}
  if version == 3:
    assert opts["rope_theta"] == {"sliding_attention": 100.0, "full_attention": 10000.0}
    assert opts["rope_scaling"]["full_attention"] == {"rope_type": "linear", "factor": 2.0}
  model = transformers.AutoModelForCausalLM.from_pretrained(str(path)).eval()
  tokenizer = Tokenizer.load(str(path))
  assert tokenizer.vocab_size == opts["vocab_size"] and tokenizer.stop_ids == (1, 6)
  ids = tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}]))
  assert len(ids) > 2 * SLIDING_WINDOW
  with torch.no_grad():
    logits = model(torch.tensor([ids])).logits
  assert logits.shape == (1, len(ids), opts["vocab_size"])
  assert float(logits.abs().max()) <= 3.0 + 1e-4  # final soft-capping is on


@pytest.mark.parametrize("field, value, base", [
    ("hidden_activation", "relu", GEMMA2_2B), ("use_bidirectional_attention", True, GEMMA3_1B),
    ("attention_bias", True, GEMMA2_2B), ("layer_types", ["chunked_attention"] * 26, GEMMA3_1B),
    ("attn_logit_softcapping", -1.0, GEMMA2_2B), ("model_type", "gemma", GEMMA2_2B),
])
def test_unsupported_option_names_the_field(field, value, base):
  with pytest.raises(ValueError) as err:
    gemma_options({**base, field: value})
  assert field in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_unsupported_rope_type_names_the_field():
  hf = {**GEMMA3_1B, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}
  with pytest.raises(ValueError, match="rope_parameters.full_attention.rope_type = 'yarn'"):
    gemma_options(hf)
