"""HF safetensors checkpoints <-> `Transformer` params (Llama / Qwen2 / Qwen3 / Gemma 2 / Gemma 3 naming).

Import streams one tensor at a time with `safetensors.safe_open` (memory-mapped) into the target
sharding via `simko_jax.models.loading.assemble_params`. Export writes `model.safetensors` +
`config.json` that `transformers.AutoModelForCausalLM.from_pretrained` reads (round trip exact).

HF tensors map to the *source* tensors of `models.layout` (one entry per HF tensor in
`HF_LAYER_NAMES`), which `layout.fuse` turns into the stored params (w_qkv, b_qkv, w_gate_up) at import
and `layout.unfuse` splits again at export. Layout conversions (HF Linear weights are [out, in]):
  linear : ours [in, out] = hf.T                     (wq [D, H*Dh], wk/wv [D, K*Dh], wo [H*Dh, D],
                                                      w_gate/w_up [D, F], w_down [F, D], lm_head [D, V])
  vector : ours = hf                                 (norms, biases)
  embed  : ours [V, D] = hf                          (embed_tokens)
Gemma (`cfg.post_norms`) has four norms per layer, two of them under other names (`HF_GEMMA_NORM_NAMES`).
Gemma norm weights are stored as HF stores them (w of the (1 + w) scale). The text model's tensors sit
under "model." (CausalLM checkpoints) or, in the multimodal Gemma3ForConditionalGeneration, under
"model.language_model." (transformers 5) / "language_model.model." (transformers 4): the import finds
which (`text_prefix`); its vision tower is not read. Export always writes "model.".
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterator

import numpy as np

from simko_jax.models.config import ModelConfig
from simko_jax.models.errors import MissingModelFileError, ModelLoadError, one_line

# our layer source tensor (`models.layout.source_shapes`) -> (HF suffix after "model.layers.{i}.", kind)
HF_LAYER_NAMES: dict[str, tuple[str, str]] = {
    "attn_norm": ("input_layernorm.weight", "vector"),
    "wq": ("self_attn.q_proj.weight", "linear"),
    "wk": ("self_attn.k_proj.weight", "linear"),
    "wv": ("self_attn.v_proj.weight", "linear"),
    "wo": ("self_attn.o_proj.weight", "linear"),
    "bq": ("self_attn.q_proj.bias", "vector"),
    "bk": ("self_attn.k_proj.bias", "vector"),
    "bv": ("self_attn.v_proj.bias", "vector"),
    "q_norm": ("self_attn.q_norm.weight", "vector"),
    "k_norm": ("self_attn.k_norm.weight", "vector"),
    "mlp_norm": ("post_attention_layernorm.weight", "vector"),
    "w_gate": ("mlp.gate_proj.weight", "linear"),
    "w_up": ("mlp.up_proj.weight", "linear"),
    "w_down": ("mlp.down_proj.weight", "linear"),
}
# Gemma's names where they differ: its post_attention_layernorm normalises the attention *output*, and
# the MLP's input norm is pre_feedforward_layernorm.
HF_GEMMA_NORM_NAMES: dict[str, tuple[str, str]] = {
    "post_attn_norm": ("post_attention_layernorm.weight", "vector"),
    "mlp_norm": ("pre_feedforward_layernorm.weight", "vector"),
    "post_mlp_norm": ("post_feedforward_layernorm.weight", "vector"),
}
TEXT_PREFIXES = ("model.", "model.language_model.", "language_model.model.")
# our top-level param name -> (HF name, kind)
HF_GLOBAL_NAMES: dict[str, tuple[str, str]] = {
    "embed": ("model.embed_tokens.weight", "embed"),
    "final_norm": ("model.norm.weight", "vector"),
    "lm_head": ("lm_head.weight", "linear"),
}


def hf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """HF tensor shape of one of our source tensor shapes."""
  return tuple(shape[::-1]) if kind == "linear" else tuple(shape)


def from_hf(kind: str, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """HF tensor -> our layout (`shape`)."""
  return (arr.T if kind == "linear" else arr).reshape(shape)


def to_hf(kind: str, arr: np.ndarray) -> np.ndarray:
  """Our layout -> HF tensor (contiguous)."""
  return np.ascontiguousarray(arr.T if kind == "linear" else arr)


def hf_tensor_name(param: str, layer: int | None, post_norms: bool = False,
                   prefix: str = "model.") -> tuple[str, str]:
  """(HF name, kind) of a global param (layer None) or a layer's source tensor. post_norms: Gemma's
  names (`cfg.post_norms`); prefix: where the text model's tensors sit (`TEXT_PREFIXES`)."""
  if layer is None:
    name, kind = HF_GLOBAL_NAMES[param]
    return (prefix + name[len("model."):] if name.startswith("model.") else name), kind
  names = {**HF_LAYER_NAMES, **HF_GEMMA_NORM_NAMES} if post_norms else HF_LAYER_NAMES
  suffix, kind = names[param]
  return f"{prefix}layers.{layer}.{suffix}", kind


def text_prefix(names) -> str:
  """The first of `TEXT_PREFIXES` under which `names` (a container of tensor names) holds the embedding;
  "model." when none does (the missing tensor is then reported by name)."""
  return next((p for p in TEXT_PREFIXES if f"{p}embed_tokens.weight" in names), "model.")


# ---------------------------------------------------------------------------------------- reading
# Keys `ModelConfig.from_hf_config` cannot default: a config.json without one of them is incomplete.
REQUIRED_HF_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size")
REFETCH = "re-download or re-export the checkpoint (for a Hub id: delete its folder in the Hub cache)"


def read_hf_config(path: str) -> dict[str, Any]:
  """`path/config.json` (`path` a local directory or a gs:// URL) as a dict; `ModelLoadError` if it is
  missing, unparsable or incomplete."""
  from simko_jax import storage
  cfg_path = storage.join(path, "config.json")
  if not storage.isfile(cfg_path):
    raise MissingModelFileError(f"no config.json in HF checkpoint directory {path!r}: it is not a "
                                f"checkpoint directory, or {REFETCH}")
  try:
    hf = json.loads(storage.read_text(cfg_path))
  except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
    raise ModelLoadError(f"{cfg_path} is not valid JSON ({one_line(err, 120)}): the file is damaged; "
                         f"{REFETCH}") from err
  # The multimodal Gemma 3's shapes sit in text_config, where transformers' defaults fill the gaps
  # (`gemma_config.gemma_options`).
  required = () if isinstance(hf, dict) and hf.get("model_type") == "gemma3" else REQUIRED_HF_KEYS
  missing = [k for k in required if not isinstance(hf, dict) or k not in hf]
  if missing:
    raise ModelLoadError(f"{cfg_path} is incomplete: it lacks {', '.join(missing)}; {REFETCH}")
  return hf


class SafetensorsReader:
  """Lazy tensor access over `model.safetensors` or a sharded `model.safetensors.index.json` dir.

  Every file is opened (its header parsed and its size checked against the header) up front, so a
  missing, truncated or damaged shard fails here with `ModelLoadError` before any param is built.
  """

  def __init__(self, path: str):
    index = os.path.join(path, "model.safetensors.index.json")
    single = os.path.join(path, "model.safetensors")
    if os.path.isfile(index):
      try:
        with open(index) as f:
          weight_map = json.load(f)["weight_map"]
      except (ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{index} is not a valid safetensors index ({one_line(err, 120)}); "
                             f"{REFETCH}") from err
    elif os.path.isfile(single):
      weight_map = None
    else:
      raise MissingModelFileError(f"no model.safetensors or model.safetensors.index.json in {path!r}; "
                                  f"{REFETCH}")
    self._files: dict[str, Any] = {}
    self._where: dict[str, str] = {}
    files = sorted(set(weight_map.values())) if weight_map else ["model.safetensors"]
    for name in files:
      fpath = os.path.join(path, name)
      if not os.path.isfile(fpath):
        raise MissingModelFileError(f"safetensors shard {fpath!r} listed in the index is missing; "
                                    f"{REFETCH}")
      handle = open_safetensors(fpath)
      self._files[name] = handle
      for key in handle.keys():
        self._where[key] = name

  def __contains__(self, name: str) -> bool:
    return name in self._where

  def get(self, name: str) -> np.ndarray:
    if name not in self._where:
      raise ModelLoadError(f"tensor {name!r} is not in the checkpoint's safetensors files: they do not "
                           f"match config.json; {REFETCH}")
    return self._files[self._where[name]].get_tensor(name)


def open_safetensors(fpath: str):
  """`safe_open(fpath)`; `ModelLoadError` naming the file when it is truncated or not safetensors."""
  from safetensors import safe_open
  try:
    return safe_open(fpath, framework="numpy")
  except Exception as err:  # noqa: BLE001 - SafetensorError (rust) has no stable Python base class
    raise ModelLoadError(f"{fpath} is not a readable safetensors file ({one_line(err, 120)}): it is "
                         f"truncated or damaged; {REFETCH}") from err


def hf_tensor_getter(path: str, cfg: ModelConfig) -> Callable[[str, int | None, tuple[int, ...]], np.ndarray]:
  """`get(param, layer, our_shape) -> np.ndarray` in our layout, with shape checks naming the tensor."""
  reader = SafetensorsReader(path)
  prefix = text_prefix(reader)

  def get(param: str, layer: int | None, shape: tuple[int, ...]) -> np.ndarray:
    name, kind = hf_tensor_name(param, layer, cfg.post_norms, prefix)
    if param == "lm_head" and name not in reader:
      raise ModelLoadError(f"config.json says the LM head is untied but tensor {name!r} is missing "
                           f"from {path!r}; {REFETCH}")
    arr = reader.get(name)
    want = hf_shape(kind, shape)
    if tuple(arr.shape) != tuple(want):
      raise ModelLoadError(f"tensor {name!r} in {path!r} has shape {tuple(arr.shape)}, expected {want} "
                           f"from its config.json: weights and config.json do not match; {REFETCH}")
    return from_hf(kind, arr, shape)

  return get


# ---------------------------------------------------------------------------------------- export
def hf_tensors(model: Any, dtype: Any = None) -> Iterator[tuple[str, np.ndarray]]:
  """(HF tensor name, host array in HF layout) for every param of `model` (fused params split
  into their HF tensors), in checkpoint order.

  One stacked layer param [L, ...] is on the host at a time (peak host memory: the largest stacked
  param, plus what the caller keeps). `dtype`: numpy/jnp dtype of the arrays (default: param dtype).
  The tied LM head is omitted (HF ties it to the embedding).
  """
  import jax

  from simko_jax.models.layout import layer_param_specs, unfuse
  cfg: ModelConfig = model.cfg

  def host(x):
    arr = np.asarray(jax.device_get(x))
    return arr if dtype is None else arr.astype(np.dtype(dtype))

  for param in ("embed", "final_norm") + (() if cfg.tie_word_embeddings else ("lm_head",)):
    name, kind = hf_tensor_name(param, None)
    yield name, to_hf(kind, host(getattr(model, param).get_value()))
  for param in layer_param_specs(cfg):
    stacked = host(getattr(model.layers, param).get_value())
    for i in range(cfg.num_layers):
      for source, arr in unfuse(cfg, param, stacked[i]).items():
        name, kind = hf_tensor_name(source, i, cfg.post_norms)
        yield name, to_hf(kind, arr)
    del stacked


def hf_config(cfg: ModelConfig, dtype: Any = None) -> dict[str, Any]:
  """The `config.json` dict of an export of `cfg` whose tensors are stored in `dtype` (default: the
  param dtype)."""
  hf_cfg = cfg.to_hf_config()
  saved_dtype = np.dtype(dtype) if dtype is not None else np.dtype(cfg.param_dtype)
  hf_cfg["torch_dtype"] = hf_cfg["dtype"] = str(saved_dtype.name)
  return hf_cfg


def save_hf(model: Any, path: str, dtype: Any = None) -> None:
  """Write `model` as `path/model.safetensors` + `path/config.json` (HF layout; tied head omitted).

  Gathers the whole model to host memory (peak = one full copy of the params). `dtype`: numpy/jnp dtype
  for the saved tensors (default: param dtype). Sharded output, tokenizer files and
  generation_config.json: `python -m simko_jax.export`. `path` may be a `gs://` URL (written to a
  local temporary directory first, then uploaded).
  """
  from safetensors.numpy import save_file

  from simko_jax import storage
  if storage.is_remote(path):  # safetensors writes local files: write them locally, then upload
    import tempfile
    with tempfile.TemporaryDirectory(prefix="simko_export_") as local:
      save_hf(model, local, dtype)
      storage.upload_tree(local, path)
    return
  os.makedirs(path, exist_ok=True)
  tensors = dict(hf_tensors(model, dtype))
  save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config(model.cfg, dtype), f, indent=2)
