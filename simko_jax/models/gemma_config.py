"""`gemma_options(hf)`: the options of a Gemma 2 / Gemma 3 (text) HF `config.json`, checked and normalised.

The Gemma family in the one decoder (issue 27): config reading and writing; the math is in `models.block`. Reads
model_type "gemma2", "gemma3_text" (Gemma3ForCausalLM, e.g. gemma-3-1b) and "gemma3" (the multimodal
Gemma3ForConditionalGeneration: only its `text_config` is read). Both config layouts are accepted:
transformers 4 (`rope_theta`, `rope_local_base_freq`, `rope_scaling`, `sliding_window_pattern`) and
transformers 5 (`rope_parameters` per layer type, `layer_types`).

The returned dict (HF names where HF has one):
  model_type                 "gemma2" | "gemma3_text"
  vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
  num_key_value_heads, head_dim, rms_norm_eps, max_position_embeddings, tie_word_embeddings,
  bos_token_id, eos_token_id, pad_token_id
  hidden_activation          "gelu_pytorch_tanh" (GeGLU with the tanh GELU; the other names are aliases)
  query_pre_attn_scalar      float: attention scores are scaled by query_pre_attn_scalar ** -0.5
  attn_logit_softcapping     float or None: scores -> cap * tanh(scores / cap)
  final_logit_softcapping    float or None: the same on the output logits
  sliding_window             int: a sliding layer attends to the last `sliding_window` positions
  layer_types                list of L "sliding_attention" | "full_attention"
  rope_theta                 {"sliding_attention": base, "full_attention": base} (Gemma 2: one base)
  rope_scaling               {"sliding_attention": None | {"rope_type": "linear", "factor": f}, "full_attention": ...}
  qk_norm                    bool: RMSNorm (1 + w) on q and k per head (Gemma 3)
Every Gemma model also scales the embedding by sqrt(hidden_size), uses RMSNorm with (1 + w) and norms
before and after attention and the MLP; those are not options.

An option we do not implement raises `ValueError` with one line naming the field (`loading` adds the
config.json path): bidirectional attention, attention biases, another activation, another RoPE type.

`model_config_kwargs(opts)` turns the options into `ModelConfig` fields (`ModelConfig.from_hf_config`
calls it for every Gemma config.json); `gemma_hf_config(cfg)` writes the transformers-5 config.json of
an export.
"""

from __future__ import annotations

import math
from typing import Any

GEMMA_MODEL_TYPES = ("gemma2", "gemma3_text", "gemma3")
LAYER_TYPES = ("sliding_attention", "full_attention")
TANH_GELU = ("gelu_pytorch_tanh", "gelu_python_tanh", "gelu_new")  # one function: tanh-approximated GELU
# transformers' defaults (Gemma2Config, Gemma3TextConfig) for keys a config.json may omit: Hub configs
# of the multimodal Gemma 3 leave e.g. num_attention_heads and vocab_size out of text_config.
_COMMON = {"num_hidden_layers": 26, "hidden_size": 2304, "intermediate_size": 9216,
           "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "rms_norm_eps": 1e-6,
           "tie_word_embeddings": True, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
           "query_pre_attn_scalar": 256, "sliding_window": 4096}
_DEFAULTS = {
    "gemma2": {**_COMMON, "vocab_size": 256000, "max_position_embeddings": 8192, "rope_theta": 10000.0,
               "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0},
    "gemma3_text": {**_COMMON, "vocab_size": 262208, "max_position_embeddings": 131072,
                    "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window_pattern": 6,
                    "attn_logit_softcapping": None, "final_logit_softcapping": None},
}
_PLAIN_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "rms_norm_eps", "max_position_embeddings",
               "bos_token_id", "eos_token_id", "pad_token_id")


def is_gemma(hf: dict[str, Any]) -> bool:
  return hf.get("model_type") in GEMMA_MODEL_TYPES


def _unsupported(field: str, value: Any, allowed: str) -> ValueError:
  return ValueError(f"Gemma config field {field} = {value!r} is not supported ({allowed})")


def _text_config(hf: dict[str, Any]) -> dict[str, Any]:
  """The text model's config with transformers' defaults filled in."""
  if hf.get("model_type") not in GEMMA_MODEL_TYPES:
    raise _unsupported("model_type", hf.get("model_type"), f"one of {GEMMA_MODEL_TYPES}")
  text = dict(hf)
  if hf["model_type"] == "gemma3":
    text = dict(hf.get("text_config") or {})
    text["model_type"] = "gemma3_text"
    for key in ("tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"):
      if key in hf and key not in text:
        text[key] = hf[key]
  return {**_DEFAULTS[text["model_type"]], **{k: v for k, v in text.items() if v is not None or
                                               k.endswith("softcapping")}}


def _layer_types(text: dict[str, Any], gemma2: bool) -> list[str]:
  num_layers = int(text["num_hidden_layers"])
  types = text.get("layer_types")
  if types is None:  # transformers 4: Gemma 2 alternates; Gemma 3 has every `pattern`-th layer global
    pattern = 2 if gemma2 else int(text["sliding_window_pattern"])
    types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(num_layers)]
  bad = sorted(set(types) - set(LAYER_TYPES))
  if bad:
    raise _unsupported("layer_types", bad, f"entries must be {' or '.join(LAYER_TYPES)}")
  if len(types) != num_layers:
    raise ValueError(f"Gemma config field layer_types has {len(types)} entries but num_hidden_layers = "
                     f"{num_layers}: the config is damaged; re-download it")
  return list(types)


def _rope_scaling(params: dict[str, Any] | None, field: str) -> dict[str, Any] | None:
  if not params:
    return None
  rtype = params.get("rope_type", params.get("type", "default"))
  if rtype == "default":
    return None
  if rtype == "linear":
    return {"rope_type": "linear", "factor": float(params["factor"])}
  raise _unsupported(field, rtype, "rope types default and linear")


def _rope(text: dict[str, Any], gemma2: bool) -> tuple[dict[str, float], dict[str, Any]]:
  """(rope_theta, rope_scaling) per layer type, from either config layout."""
  params = text.get("rope_parameters") or {}
  if gemma2:  # one RoPE for every layer
    flat = params if "rope_theta" in params or "rope_type" in params else {}
    theta = float(flat.get("rope_theta", text["rope_theta"]))
    scaling = _rope_scaling(flat or text.get("rope_scaling"), "rope_parameters.rope_type")
    return dict.fromkeys(LAYER_TYPES, theta), dict.fromkeys(LAYER_TYPES, scaling)
  local = params.get("sliding_attention") or {}
  glob = params.get("full_attention") or {}
  theta = {"sliding_attention": float(local.get("rope_theta", text["rope_local_base_freq"])),
           "full_attention": float(glob.get("rope_theta", text["rope_theta"]))}
  scaling = {"sliding_attention": _rope_scaling(local, "rope_parameters.sliding_attention.rope_type"),
             "full_attention": _rope_scaling(glob or text.get("rope_scaling"),
                                             "rope_parameters.full_attention.rope_type")}
  return theta, scaling


def _check_unsupported(text: dict[str, Any]) -> None:
  act = text.get("hidden_activation") or text.get("hidden_act") or "gelu_pytorch_tanh"
  if act not in TANH_GELU:
    raise _unsupported("hidden_activation", act, f"only the tanh GELU: {', '.join(TANH_GELU)}")
  if text.get("use_bidirectional_attention"):
    raise _unsupported("use_bidirectional_attention", True, "only causal attention")
  if text.get("attention_bias"):
    raise _unsupported("attention_bias", True, "no q/k/v/o biases")


def gemma_options(hf: dict[str, Any]) -> dict[str, Any]:
  """The options of a Gemma 2 / 3 `config.json` dict (see module doc); ValueError naming the field for
  an option we do not implement."""
  text = _text_config(hf)
  gemma2 = text["model_type"] == "gemma2"
  _check_unsupported(text)
  theta, scaling = _rope(text, gemma2)
  opts = {k: text[k] for k in _PLAIN_KEYS}
  opts.update(
      model_type=text["model_type"], hidden_activation="gelu_pytorch_tanh",
      query_pre_attn_scalar=float(text["query_pre_attn_scalar"]),
      attn_logit_softcapping=_cap(text, "attn_logit_softcapping"),
      final_logit_softcapping=_cap(text, "final_logit_softcapping"),
      sliding_window=int(text["sliding_window"]), layer_types=_layer_types(text, gemma2),
      rope_theta=theta, rope_scaling=scaling, qk_norm=not gemma2,
      tie_word_embeddings=bool(text["tie_word_embeddings"]))
  return opts


def _cap(text: dict[str, Any], field: str) -> float | None:
  """A soft-capping value (None: no capping)."""
  value = text.get(field)
  if value is None:
    return None
  if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
    raise _unsupported(field, value, "a positive number, or null for no capping")
  return float(value)


_ARCHITECTURE = {"gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}


def model_config_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
  """`ModelConfig` keyword arguments of `gemma_options(hf)`.

  Gemma 3's config may carry `attn_logit_softcapping`, but transformers' Gemma3Attention never applies
  it (Google's Gemma 3 configs set it to None): it is dropped for Gemma 3, as transformers does."""
  gemma2 = opts["model_type"] == "gemma2"
  theta, scaling = opts["rope_theta"], opts["rope_scaling"]
  return dict(
      vocab_size=opts["vocab_size"], hidden_size=opts["hidden_size"], num_layers=opts["num_hidden_layers"],
      num_heads=opts["num_attention_heads"], num_kv_heads=opts["num_key_value_heads"],
      head_dim=opts["head_dim"], intermediate_size=opts["intermediate_size"], rms_norm_eps=opts["rms_norm_eps"],
      rope_theta=theta["full_attention"], rope_scaling=scaling["full_attention"],
      rope_local_theta=None if gemma2 else theta["sliding_attention"],
      rope_local_scaling=None if gemma2 else scaling["sliding_attention"],
      tie_word_embeddings=opts["tie_word_embeddings"], qk_norm=opts["qk_norm"],
      max_position_embeddings=opts["max_position_embeddings"], bos_token_id=opts["bos_token_id"],
      eos_token_id=opts["eos_token_id"], pad_token_id=opts["pad_token_id"],
      architecture=_ARCHITECTURE[opts["model_type"]], norm_offset=1.0, post_norms=True,
      hidden_act="gelu_pytorch_tanh", scale_embeddings=True, query_pre_attn_scalar=opts["query_pre_attn_scalar"],
      attn_logit_softcapping=opts["attn_logit_softcapping"] if gemma2 else None,
      final_logit_softcapping=opts["final_logit_softcapping"], sliding_window=opts["sliding_window"],
      layer_types=tuple(opts["layer_types"]))


def _rope_parameters(theta: float, scaling: dict[str, Any] | None) -> dict[str, Any]:
  if scaling is None:
    return {"rope_type": "default", "rope_theta": theta}
  return {"rope_type": "linear", "factor": scaling["factor"], "rope_theta": theta}


def _int_if_whole(x: float) -> int | float:
  """transformers' Gemma configs type query_pre_attn_scalar as int (strict: 32.0 is refused)."""
  return int(x) if float(x).is_integer() else x


def gemma_hf_config(cfg) -> dict[str, Any]:
  """The transformers-5 `config.json` dict of a Gemma `ModelConfig` (export); `gemma_options` reads it
  back to the same config."""
  gemma2 = cfg.architecture == "Gemma2ForCausalLM"
  hf = {
      "architectures": [cfg.architecture], "model_type": "gemma2" if gemma2 else "gemma3_text",
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
      "intermediate_size": cfg.intermediate_size, "rms_norm_eps": cfg.rms_norm_eps,
      "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": cfg.max_position_embeddings,
      "query_pre_attn_scalar": _int_if_whole(cfg.query_pre_attn_scalar), "attn_logit_softcapping": cfg.attn_logit_softcapping,
      "final_logit_softcapping": cfg.final_logit_softcapping, "sliding_window": cfg.sliding_window,
      "layer_types": list(cfg.layer_types), "tie_word_embeddings": cfg.tie_word_embeddings,
      "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id,
      "attention_bias": False, "attention_dropout": 0.0, "torch_dtype": "float32",
  }
  if gemma2:
    hf.update(rope_theta=cfg.rope_theta, rope_parameters=_rope_parameters(cfg.rope_theta, cfg.rope_scaling))
  else:
    hf["rope_parameters"] = {
        "sliding_attention": _rope_parameters(cfg.rope_local_theta, cfg.rope_local_scaling),
        "full_attention": _rope_parameters(cfg.rope_theta, cfg.rope_scaling)}
  return hf
