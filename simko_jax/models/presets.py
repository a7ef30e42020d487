"""HF-style `config.json` dicts of the paper models, so their architecture is known without the checkpoint.

`ModelConfig.from_hf_config(HF_PRESETS[name])` gives the architecture (used by `--dry_run`, which sizes
the 7B / 3B runs on a CPU). Values are those published in each model's `config.json` on the Hugging Face
Hub (the fields `from_hf_config` reads, plus the ones that identify the model). `preset_for(path)`
matches a checkpoint path or Hub id by its last component, e.g. "/data/Qwen2.5-Math-7B" or
"Qwen/Qwen2.5-Math-7B@main" -> "Qwen2.5-Math-7B".
"""

from __future__ import annotations

import copy
import os
from typing import Any

QWEN25_MATH_7B: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
    "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "sliding_window": 4096, "use_sliding_window": False,
    "max_window_layers": 28, "tie_word_embeddings": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151643, "torch_dtype": "bfloat16",
}

LLAMA32_3B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": 128256, "hidden_size": 3072, "intermediate_size": 8192,
    "num_hidden_layers": 28, "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128,
    "hidden_act": "silu", "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True,
    "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": 128001,
    "torch_dtype": "bfloat16",
}

QWEN25_05B: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": False,
    "max_window_layers": 24, "tie_word_embeddings": True, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151643, "torch_dtype": "bfloat16",
}

# google/gemma-3-1b-it's config.json (transformers-4 layout; read by `models.gemma_config`).
GEMMA3_1B: dict[str, Any] = {
    "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
    "vocab_size": 262144, "hidden_size": 1152, "intermediate_size": 6912,
    "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
    "query_pre_attn_scalar": 256, "attn_logit_softcapping": None, "final_logit_softcapping": None,
    "rope_theta": 1000000, "rope_local_base_freq": 10000, "rope_scaling": None,
    "sliding_window": 512, "sliding_window_pattern": 6, "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0, "torch_dtype": "bfloat16",
}

# The -Instruct variants share the base model's architecture (only the weights / chat template differ).
HF_PRESETS: dict[str, dict[str, Any]] = {
    "Qwen2.5-Math-7B": QWEN25_MATH_7B,
    "Llama-3.2-3B": LLAMA32_3B,
    "Llama-3.2-3B-Instruct": LLAMA32_3B,
    "Qwen2.5-0.5B": QWEN25_05B,
    "Qwen2.5-0.5B-Instruct": QWEN25_05B,
    "gemma-3-1b-it": GEMMA3_1B,
    "gemma-3-1b-pt": GEMMA3_1B,
}


def hf_preset(name: str) -> dict[str, Any]:
  """A copy of the HF config dict of preset `name` (KeyError listing the known names)."""
  if name not in HF_PRESETS:
    raise KeyError(f"no architecture preset {name!r}; known: {sorted(HF_PRESETS)}")
  return copy.deepcopy(HF_PRESETS[name])


def preset_for(path: str) -> str | None:
  """The preset name matching a checkpoint path's / URL's / Hub id's last component (minus "@revision"),
  or None."""
  last = os.path.basename(os.path.normpath(path)) if "://" not in path else path.rstrip("/").rsplit("/", 1)[-1]
  name = last.split("@", 1)[0]
  return name if name in HF_PRESETS else None
