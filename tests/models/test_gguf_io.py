"""GGUF import on tiny files written with gguf.GGUFWriter from a transformers Llama (F32 exact; F16 /
Q8_0 / Q4_0 / Q4_1 equal to gguf's own dequantization of the stored tensors), and the tokenizer vocab."""

import numpy as np
import pytest

from simko_jax.models import load_pretrained
from simko_jax.models.gguf_io import open_gguf, permute_rope_rows
from tests.models.hf_helpers import left_padded_batch, torch_logits


def write_gguf(hf, path, qtype_of):
  """Write `hf` (LlamaForCausalLM, no rope scaling) as llama.cpp's converter would (q/k rows permuted)."""
  import gguf
  c = hf.config
  w = gguf.GGUFWriter(str(path), "llama")
  w.add_block_count(c.num_hidden_layers)
  w.add_context_length(c.max_position_embeddings)
  w.add_embedding_length(c.hidden_size)
  w.add_feed_forward_length(c.intermediate_size)
  w.add_head_count(c.num_attention_heads)
  w.add_head_count_kv(c.num_key_value_heads)
  w.add_key_length(c.head_dim)
  w.add_value_length(c.head_dim)
  w.add_rope_freq_base(c.rope_parameters["rope_theta"])
  w.add_layer_norm_rms_eps(c.rms_norm_eps)
  w.add_vocab_size(c.vocab_size)
  w.add_tokenizer_model("gpt2")
  w.add_token_list([f"t{i}" for i in range(c.vocab_size)])
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
  sub = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
         "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
  for name, t in hf.state_dict().items():
    if name == "lm_head.weight" and c.tie_word_embeddings:
      continue
    arr = t.float().numpy().copy()
    if name.startswith("model.layers."):
      i, rest = name[len("model.layers."):].split(".", 1)
      key = rest.rsplit(".", 1)[0]
      gname = f"blk.{i}.{sub[key]}.weight"
      if key == "self_attn.q_proj":
        arr = permute_rope_rows(arr, c.num_attention_heads)
      elif key == "self_attn.k_proj":
        arr = permute_rope_rows(arr, c.num_key_value_heads)
    else:
      gname = names[name]
    qt = qtype_of(gname, arr)
    if qt == gguf.GGMLQuantizationType.F32:
      w.add_tensor(gname, arr)
    elif qt == gguf.GGMLQuantizationType.F16:
      w.add_tensor(gname, arr.astype(np.float16))
    else:
      w.add_tensor(gname, gguf.quants.quantize(arr, qt), raw_dtype=qt)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()


def _untied_llama():
  import torch
  import transformers
  torch.manual_seed(5)
  cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                                 tie_word_embeddings=False, initializer_range=0.1,
                                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
  return transformers.LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("tied", [False, True])
def test_f32_gguf_matches_transformers(tied, tmp_path):
  import gguf
  hf = _untied_llama()
  if tied:
    import transformers
    cfg = hf.config.to_dict()
    cfg["tie_word_embeddings"] = True
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()
  path = tmp_path / "tiny.gguf"
  write_gguf(hf, path, lambda n, a: gguf.GGMLQuantizationType.F32)
  model = load_pretrained(str(path))
  cfg = model.cfg
  assert cfg.tie_word_embeddings == tied and cfg.num_kv_heads == 2 and cfg.head_dim == 16
  tokens, mask = left_padded_batch(cfg.vocab_size, lengths=(9, 4), total=9)
  got = np.asarray(model(tokens, attention_mask_BxT=mask))
  want = torch_logits(hf, tokens, mask)
  real = mask.astype(bool)
  assert np.abs(got[real] - want[real]).max() <= 1e-4


def test_quantized_types_dequantize_like_gguf(tmp_path):
  import gguf
  Q = gguf.GGMLQuantizationType
  hf = _untied_llama()
  kinds = {"attn_q": Q.Q4_0, "attn_k": Q.Q4_1, "attn_v": Q.Q8_0, "attn_output": Q.F16, "ffn_gate": Q.Q4_0,
           "ffn_up": Q.Q4_1, "ffn_down": Q.Q8_0, "token_embd": Q.F16, "output": Q.Q8_0}

  def qtype_of(name, arr):
    return kinds.get(name.split(".")[-2], Q.F32)

  path = tmp_path / "q.gguf"
  write_gguf(hf, path, qtype_of)
  reader = open_gguf(str(path))
  types = {t.tensor_type for t in reader.tensors}
  assert {Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.F16, Q.F32} <= types
  model = load_pretrained(str(path))
  cfg = model.cfg
  t = {x.name: x for x in reader.tensors}["blk.1.attn_k.weight"]
  deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(32, 64)
  from simko_jax.models.gguf_io import unpermute_rope_rows
  from simko_jax.models.layout import unfuse
  expect = unpermute_rope_rows(deq, 2).T  # [D, K*Dh]
  wk = unfuse(cfg, "w_qkv", np.asarray(model.layers.w_qkv.get_value()[1]))["wk"]
  np.testing.assert_array_equal(wk, expect)
  # and the quantized model still tracks the float one (4-bit noise on random weights is large)
  tokens, mask = left_padded_batch(cfg.vocab_size, lengths=(9, 4), total=9)
  got = np.asarray(model(tokens, attention_mask_BxT=mask))
  want = torch_logits(hf, tokens, mask)
  real = mask.astype(bool)
  assert np.corrcoef(got[real].ravel(), want[real].ravel())[0, 1] > 0.9


def test_unsupported_arch(tmp_path):
  import gguf
  w = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "gpt2")
  w.add_block_count(1)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  with pytest.raises(ValueError, match="only 'llama'"):
    load_pretrained(str(tmp_path / "x.gguf"))
