"""ModelConfig <-> HF config dicts (transformers 4 and 5 layouts), validation, presets."""

import jax
import pytest

from simko_jax.models import ModelConfig, tiny_llama3, tiny_qwen2, tiny_qwen3


@pytest.mark.parametrize("make", [tiny_llama3, tiny_qwen2, tiny_qwen3])
def test_roundtrip_and_transformers_reads_it(make):
  import transformers
  cfg = make()
  hf = cfg.to_hf_config()
  assert ModelConfig.from_hf_config(hf) == cfg
  tcfg = transformers.AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "architectures"})
  assert ModelConfig.from_hf_config({**tcfg.to_dict(), "architectures": hf["architectures"]}) == cfg
  hash(cfg)  # usable as a static jit argument
  jax.jit(lambda x, c: x, static_argnums=1)(1.0, cfg)


def test_transformers4_layout():
  hf = {"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16, "rope_theta": 5e5,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}}
  cfg = ModelConfig.from_hf_config(hf)
  assert cfg.num_kv_heads == 2 and cfg.head_dim == 4 and cfg.rope_theta == 5e5
  assert cfg.rope_scaling["factor"] == 32.0


def test_errors():
  base = tiny_llama3().to_hf_config()
  with pytest.raises(ValueError, match="unsupported architecture"):
    ModelConfig.from_hf_config({**base, "architectures": ["MistralForCausalLM"]})
  with pytest.raises(ValueError, match="rope scaling"):
    ModelConfig.from_hf_config({**base, "rope_parameters": {"rope_type": "yarn", "factor": 2.0}})
  with pytest.raises(ValueError, match="multiple"):
    tiny_llama3(num_heads=3, num_kv_heads=2)
  with pytest.raises(ValueError, match="remat"):
    tiny_llama3(remat="sometimes")
