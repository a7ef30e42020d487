"""`ModelConfig`: the one config for the decoder-only policy family (Llama / Qwen2 / Qwen3 / Gemma 2 /
Gemma 3 text).

Conversion to/from HF `config.json` dicts (`from_hf_config` / `to_hf_config`) and tiny presets for tests.
Both the transformers-4 layout (`rope_theta`, `rope_scaling`) and the transformers-5 one
(`rope_parameters`) are read; the written dict carries both, which transformers 5 accepts. Gemma
configs are read and written by `models.gemma_config` (`gemma_options`, `gemma_hf_config`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Gemma2ForCausalLM",
                           "Gemma3ForCausalLM")
GEMMA_ARCHITECTURES = ("Gemma2ForCausalLM", "Gemma3ForCausalLM")
_MODEL_TYPE = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
HIDDEN_ACTS = ("silu", "gelu_pytorch_tanh")
LAYER_TYPES = ("full_attention", "sliding_attention")  # HF's names; index = the layer's kind in `layer_kinds`
REMAT_POLICIES = ("none", "full", "dots_saveable", "nothing_saveable", "everything_saveable",
                  "dots_with_no_batch_dims_saveable")
ATTENTION_IMPLS = ("xla", "jax", "cudnn")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of the decoder-only transformer.

  `param_dtype` is the storage dtype of params, `dtype` the compute dtype of activations/matmuls
  (logits are always float32). `rope_scaling` is None or a llama3 dict with keys factor, low_freq_factor,
  high_freq_factor, original_max_position_embeddings. `attention_bias`: bias on q/k/v projections
  (Qwen2). `qk_norm`: per-head RMSNorm on q and k before RoPE (Qwen3). `remat`: one of REMAT_POLICIES,
  applied per layer. `attention_impl`: "xla" (einsum softmax in fp32, default), "jax"
  (`jax.nn.dot_product_attention`, XLA backend) or "cudnn" (its cuDNN flash kernel; GPU only).
  `rope_scaling` may also be {"rope_type": "linear", "factor": f} (positions divided by f; Gemma 3).

  Gemma flags (all off for Llama / Qwen; set from a Gemma config.json by `models.gemma_config`):
  `norm_offset`: every RMSNorm scales by (norm_offset + w) (1.0 for Gemma; its norm weights start at 0).
  `post_norms`: a second RMSNorm on the attention and MLP outputs before their residual add (Gemma's
  post_attention_layernorm / post_feedforward_layernorm). `hidden_act`: the gated MLP's activation,
  "silu" (SwiGLU) or "gelu_pytorch_tanh" (GeGLU with the tanh GELU). `scale_embeddings`: embeddings
  times sqrt(hidden_size), rounded to `dtype` as HF does. `query_pre_attn_scalar`: attention scores
  scaled by query_pre_attn_scalar**-0.5 (None: head_dim**-0.5). `attn_logit_softcapping` /
  `final_logit_softcapping`: scores / output logits -> cap * tanh(x / cap) (None: off).
  `layer_types`: None (every layer attends to all keys) or one of LAYER_TYPES per layer; a
  "sliding_attention" layer sees the keys at most `sliding_window - 1` slots before its query (HF's
  `kv_idx > q_idx - sliding_window`). `rope_local_theta` / `rope_local_scaling`: the RoPE of sliding
  layers (Gemma 3's rope_local_base_freq); None: the global one.
  """
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  intermediate_size: int
  rms_norm_eps: float = 1e-5
  rope_theta: float = 10000.0
  rope_scaling: dict[str, Any] | None = None
  tie_word_embeddings: bool = False
  attention_bias: bool = False
  qk_norm: bool = False
  max_position_embeddings: int = 2048
  param_dtype: Any = jnp.float32
  dtype: Any = jnp.float32
  remat: str = "none"
  attention_impl: str = "xla"
  bos_token_id: int | None = None
  eos_token_id: int | list[int] | None = None
  pad_token_id: int | None = None
  architecture: str = "LlamaForCausalLM"
  norm_offset: float = 0.0
  post_norms: bool = False
  hidden_act: str = "silu"
  scale_embeddings: bool = False
  query_pre_attn_scalar: float | None = None
  attn_logit_softcapping: float | None = None
  final_logit_softcapping: float | None = None
  sliding_window: int | None = None
  layer_types: tuple[str, ...] | None = None
  rope_local_theta: float | None = None
  rope_local_scaling: dict[str, Any] | None = None

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"remat={self.remat!r} not in {REMAT_POLICIES}")
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f"attention_impl={self.attention_impl!r} not in {ATTENTION_IMPLS}")
    if self.architecture not in SUPPORTED_ARCHITECTURES:
      raise ValueError(f"architecture={self.architecture!r} not in {SUPPORTED_ARCHITECTURES}")
    for scaling in (self.rope_scaling, self.rope_local_scaling):
      _check_rope_scaling(scaling)
    self._check_gemma_flags()

  def _check_gemma_flags(self):
    if self.hidden_act not in HIDDEN_ACTS:
      raise ValueError(f"hidden_act={self.hidden_act!r} not in {HIDDEN_ACTS}")
    if self.layer_types is not None:
      object.__setattr__(self, "layer_types", tuple(self.layer_types))  # a list from JSON: hashable
      bad = sorted(set(self.layer_types) - set(LAYER_TYPES))
      if bad or len(self.layer_types) != self.num_layers:
        raise ValueError(f"layer_types must hold num_layers={self.num_layers} entries of {LAYER_TYPES}, got "
                         f"{len(self.layer_types)} (unknown: {bad})")
      if "sliding_attention" in self.layer_types and not (self.sliding_window or 0) > 0:
        raise ValueError(f"sliding_window={self.sliding_window!r} must be a positive int for sliding layers")
    if self.attn_logit_softcapping is not None and self.attention_impl != "xla":
      raise ValueError(f"attention_impl={self.attention_impl!r} cannot soft-cap attention scores "
                       f"(attn_logit_softcapping={self.attn_logit_softcapping}); use attention_impl='xla'")

  def layer_kinds(self) -> tuple[int, ...]:
    """Per layer, its index in LAYER_TYPES: 0 full attention, 1 sliding window (all 0 without layer_types)."""
    types = self.layer_types or ("full_attention",) * self.num_layers
    return tuple(LAYER_TYPES.index(t) for t in types)

  def num_layer_kinds(self) -> int:
    """1 + the largest `layer_kinds` entry: how many per-kind masks / RoPE tables the layers index."""
    return max(self.layer_kinds()) + 1

  def rope_for_kind(self, kind: int) -> tuple[float, dict[str, Any] | None]:
    """(theta, scaling) of the RoPE of layers of kind `kind` (`layer_kinds`)."""
    if kind == 1 and self.rope_local_theta is not None:
      return self.rope_local_theta, self.rope_local_scaling
    return self.rope_theta, self.rope_scaling

  def replace(self, **kw) -> "ModelConfig":
    return dataclasses.replace(self, **kw)

  def __hash__(self):  # rope_scaling is a dict; hash a frozen view so the config can be a static arg.
    fields = tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
    return hash(tuple((k, tuple(sorted(v.items())) if isinstance(v, dict) else
                       (tuple(v) if isinstance(v, list) else v)) for k, v in fields))

  # ------------------------------------------------------------------ HF conversion
  @classmethod
  def from_hf_config(cls, hf: dict[str, Any], **overrides) -> "ModelConfig":
    """Build from an HF `config.json` dict; raises ValueError for unsupported architectures/features."""
    from simko_jax.models import gemma_config
    if gemma_config.is_gemma(hf):
      return cls(**{**gemma_config.model_config_kwargs(gemma_config.gemma_options(hf)), **overrides})
    archs = hf.get("architectures") or []
    arch = archs[0] if archs else {v: k for k, v in _MODEL_TYPE.items()}.get(hf.get("model_type"))
    if arch not in SUPPORTED_ARCHITECTURES:
      raise ValueError(f"unsupported architecture {archs or hf.get('model_type')!r}; "
                       f"supported: {SUPPORTED_ARCHITECTURES}")
    if hf.get("hidden_act", "silu") != "silu":
      raise ValueError(f"unsupported hidden_act {hf.get('hidden_act')!r} (only silu)")
    if hf.get("mlp_bias"):
      raise ValueError("mlp_bias=True is not supported")
    if arch == "Qwen2ForCausalLM" and hf.get("use_sliding_window"):
      raise ValueError("Qwen2 use_sliding_window=True is not supported")
    if arch != "Qwen2ForCausalLM" and hf.get("attention_bias"):
      raise ValueError(f"attention_bias=True (incl. o_proj bias) is not supported for {arch}")
    rope = dict(hf.get("rope_parameters") or {})
    theta = rope.pop("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = hf.get("rope_scaling") or (rope if rope else None)
    if scaling is not None:
      rtype = scaling.get("rope_type", scaling.get("type", "default"))
      if rtype == "default":
        scaling = None
      elif rtype == "llama3":
        scaling = {k: scaling[k] for k in ("factor", "low_freq_factor", "high_freq_factor",
                                           "original_max_position_embeddings")}
      else:
        raise ValueError(f"unsupported rope scaling type {rtype!r} (only llama3)")
    heads = hf["num_attention_heads"]
    kw = dict(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        intermediate_size=hf["intermediate_size"], rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=float(theta), rope_scaling=scaling,
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        attention_bias=arch == "Qwen2ForCausalLM", qk_norm=arch == "Qwen3ForCausalLM",
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        bos_token_id=hf.get("bos_token_id"), eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"), architecture=arch)
    kw.update(overrides)
    return cls(**kw)

  def to_hf_config(self) -> dict[str, Any]:
    """An HF `config.json` dict that `transformers.AutoConfig` reads back to the same model."""
    if self.architecture in GEMMA_ARCHITECTURES:
      from simko_jax.models.gemma_config import gemma_hf_config
      return gemma_hf_config(self)
    rope_parameters = {"rope_type": "default", "rope_theta": self.rope_theta}
    if self.rope_scaling is not None:
      rope_parameters = {"rope_type": "llama3", **self.rope_scaling, "rope_theta": self.rope_theta}
    hf = {
        "architectures": [self.architecture], "model_type": _MODEL_TYPE[self.architecture],
        "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
        "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_heads,
        "num_key_value_heads": self.num_kv_heads, "head_dim": self.head_dim,
        "intermediate_size": self.intermediate_size, "rms_norm_eps": self.rms_norm_eps,
        "hidden_act": "silu", "max_position_embeddings": self.max_position_embeddings,
        "rope_theta": self.rope_theta, "rope_parameters": rope_parameters,
        "tie_word_embeddings": self.tie_word_embeddings, "bos_token_id": self.bos_token_id,
        "eos_token_id": self.eos_token_id, "pad_token_id": self.pad_token_id,
        "torch_dtype": "float32", "attention_dropout": 0.0,
    }
    if self.architecture == "LlamaForCausalLM":
      hf.update(attention_bias=False, mlp_bias=False)
    if self.architecture == "Qwen2ForCausalLM":
      hf.update(use_sliding_window=False)
    if self.architecture == "Qwen3ForCausalLM":
      hf.update(attention_bias=False, use_sliding_window=False)
    return hf


def _check_rope_scaling(scaling: dict[str, Any] | None) -> None:
  """A rope scaling dict is None, {"rope_type": "linear", "factor": f} or a llama3 dict (see ModelConfig)."""
  if scaling is None:
    return
  if scaling.get("rope_type") == "linear":
    if not float(scaling.get("factor", 0)) > 0:
      raise ValueError(f"rope_scaling (linear) needs a positive factor, got {scaling!r}")
    return
  missing = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"} - set(scaling)
  if missing:
    raise ValueError(f"rope_scaling (llama3) is missing keys {sorted(missing)}")


def tiny_llama3(**kw) -> ModelConfig:
  """Tiny Llama-3 style config: GQA, llama3 rope scaling, tied embeddings."""
  base = dict(vocab_size=256, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
              intermediate_size=128, rms_norm_eps=1e-5, rope_theta=500000.0,
              rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 32},
              tie_word_embeddings=True, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
              pad_token_id=0, architecture="LlamaForCausalLM")
  base.update(kw)
  return ModelConfig(**base)


def tiny_qwen2(**kw) -> ModelConfig:
  """Tiny Qwen2 style config: qkv bias, untied LM head."""
  base = dict(vocab_size=256, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
              intermediate_size=128, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
              attention_bias=True, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
              pad_token_id=0, architecture="Qwen2ForCausalLM")
  base.update(kw)
  return ModelConfig(**base)


def tiny_qwen3(**kw) -> ModelConfig:
  """Tiny Qwen3 style config: per-head q/k RMSNorm, head_dim != hidden/heads."""
  base = dict(vocab_size=256, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32,
              intermediate_size=128, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
              qk_norm=True, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
              architecture="Qwen3ForCausalLM")
  base.update(kw)
  return ModelConfig(**base)


def tiny_gemma2(**kw) -> ModelConfig:
  """Tiny Gemma 2 style config: (1 + w) and post norms, GeGLU, scaled embeddings, both soft-caps,
  query_pre_attn_scalar != head_dim, sliding window 4 on every other layer."""
  base = dict(vocab_size=256, hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2, head_dim=24,
              intermediate_size=96, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True,
              max_position_embeddings=256, bos_token_id=2, eos_token_id=1, pad_token_id=0,
              architecture="Gemma2ForCausalLM", norm_offset=1.0, post_norms=True, hidden_act="gelu_pytorch_tanh",
              scale_embeddings=True, query_pre_attn_scalar=32.0, attn_logit_softcapping=5.0,
              final_logit_softcapping=3.0, sliding_window=4,
              layer_types=("sliding_attention", "full_attention") * 2)
  base.update(kw)
  return ModelConfig(**base)


def tiny_gemma3(**kw) -> ModelConfig:
  """Tiny Gemma 3 style config: as `tiny_gemma2` without the attention soft-cap, with QK-norm, every
  third layer global, a local RoPE base for sliding layers and linear RoPE scaling on global ones."""
  base = dict(num_layers=6, qk_norm=True, attn_logit_softcapping=None, architecture="Gemma3ForCausalLM",
              layer_types=("sliding_attention", "sliding_attention", "full_attention") * 2,
              rope_scaling={"rope_type": "linear", "factor": 2.0}, rope_local_theta=100.0)
  base.update(kw)
  return tiny_gemma2(**base)


PRESETS = {"tiny_llama3": tiny_llama3, "tiny_qwen2": tiny_qwen2, "tiny_qwen3": tiny_qwen3,
           "tiny_gemma2": tiny_gemma2, "tiny_gemma3": tiny_gemma3}
