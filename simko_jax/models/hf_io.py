"""HF safetensors checkpoints <-> `Transformer` params (Llama / Qwen2 / Qwen3 naming).

Import streams one tensor at a time with `safetensors.safe_open` (memory-mapped) into the target
sharding via `simko_jax.models.loading.assemble_params`. Export writes `model.safetensors` +
`config.json` that `transformers.AutoModelForCausalLM.from_pretrained` reads (round trip exact).

Layout conversions (HF Linear weights are [out, in]):
  linear1: ours [in, *out] = hf.T.reshape(...)      (wq/wk/wv [D,N,H], w_gate/w_up [D,F], w_down [F,D])
  linear2: ours [*in(2 dims), out] = hf.T.reshape(...)  (wo [N,H,D] from o_proj [D, N*H])
  vector : ours = hf.reshape(...)                    (norms, biases [N,H])
  embed  : ours [V, D] = hf                          (embed_tokens; lm_head is stored [D, V] = hf.T)
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np

from simko_jax.models.config import ModelConfig

# our layer param name -> (HF suffix after "model.layers.{i}.", kind)
HF_LAYER_NAMES: dict[str, tuple[str, str]] = {
    "attn_norm": ("input_layernorm.weight", "vector"),
    "wq": ("self_attn.q_proj.weight", "linear1"),
    "wk": ("self_attn.k_proj.weight", "linear1"),
    "wv": ("self_attn.v_proj.weight", "linear1"),
    "wo": ("self_attn.o_proj.weight", "linear2"),
    "bq": ("self_attn.q_proj.bias", "vector"),
    "bk": ("self_attn.k_proj.bias", "vector"),
    "bv": ("self_attn.v_proj.bias", "vector"),
    "q_norm": ("self_attn.q_norm.weight", "vector"),
    "k_norm": ("self_attn.k_norm.weight", "vector"),
    "mlp_norm": ("post_attention_layernorm.weight", "vector"),
    "w_gate": ("mlp.gate_proj.weight", "linear1"),
    "w_up": ("mlp.up_proj.weight", "linear1"),
    "w_down": ("mlp.down_proj.weight", "linear1"),
}
# our top-level param name -> (HF name, kind)
HF_GLOBAL_NAMES: dict[str, tuple[str, str]] = {
    "embed": ("model.embed_tokens.weight", "embed"),
    "final_norm": ("model.norm.weight", "vector"),
    "lm_head": ("lm_head.weight", "linear1"),
}


def hf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """HF tensor shape for one of our (per-layer) param shapes."""
  if kind == "embed":
    return tuple(shape)
  if kind == "vector":
    return (int(np.prod(shape)),)
  n_in = 1 if kind == "linear1" else 2
  return (int(np.prod(shape[n_in:])), int(np.prod(shape[:n_in])))


def from_hf(kind: str, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """HF tensor -> our layout (`shape`)."""
  if kind in ("vector", "embed"):
    return arr.reshape(shape)
  return arr.T.reshape(shape)


def to_hf(kind: str, arr: np.ndarray) -> np.ndarray:
  """Our layout -> HF tensor (contiguous)."""
  if kind == "embed":
    return np.ascontiguousarray(arr)
  if kind == "vector":
    return np.ascontiguousarray(arr.reshape(-1))
  n_in = 1 if kind == "linear1" else 2
  return np.ascontiguousarray(arr.reshape(int(np.prod(arr.shape[:n_in])), -1).T)


def hf_tensor_name(param: str, layer: int | None) -> tuple[str, str]:
  if layer is None:
    return HF_GLOBAL_NAMES[param]
  suffix, kind = HF_LAYER_NAMES[param]
  return f"model.layers.{layer}.{suffix}", kind


# ---------------------------------------------------------------------------------------- reading
def read_hf_config(path: str) -> dict[str, Any]:
  """config.json of a HF checkpoint directory (a local path or a gs:// URL)."""
  from simko_jax import storage
  cfg_path = storage.join(path, "config.json")
  if not storage.isfile(cfg_path):
    raise FileNotFoundError(f"no config.json in HF checkpoint directory {path!r}")
  return json.loads(storage.read_text(cfg_path))


class SafetensorsReader:
  """Lazy tensor access over `model.safetensors` or a sharded `model.safetensors.index.json` dir."""

  def __init__(self, path: str):
    from safetensors import safe_open
    index = os.path.join(path, "model.safetensors.index.json")
    single = os.path.join(path, "model.safetensors")
    if os.path.isfile(index):
      with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    elif os.path.isfile(single):
      weight_map = None
    else:
      raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path!r}")
    self._files: dict[str, Any] = {}
    self._where: dict[str, str] = {}
    files = sorted(set(weight_map.values())) if weight_map else ["model.safetensors"]
    for name in files:
      fpath = os.path.join(path, name)
      if not os.path.isfile(fpath):
        raise FileNotFoundError(f"safetensors shard {fpath!r} listed in the index is missing")
      handle = safe_open(fpath, framework="numpy")
      self._files[name] = handle
      for key in handle.keys():
        self._where[key] = name

  def __contains__(self, name: str) -> bool:
    return name in self._where

  def get(self, name: str) -> np.ndarray:
    if name not in self._where:
      raise KeyError(f"tensor {name!r} not found in the checkpoint")
    return self._files[self._where[name]].get_tensor(name)


def hf_tensor_getter(path: str, cfg: ModelConfig) -> Callable[[str, int | None, tuple[int, ...]], np.ndarray]:
  """`get(param, layer, our_shape) -> np.ndarray` in our layout, with shape checks naming the tensor."""
  reader = SafetensorsReader(path)

  def get(param: str, layer: int | None, shape: tuple[int, ...]) -> np.ndarray:
    name, kind = hf_tensor_name(param, layer)
    if param == "lm_head" and name not in reader:
      raise KeyError(f"untied config but tensor {name!r} is missing from {path!r}")
    arr = reader.get(name)
    want = hf_shape(kind, shape)
    if tuple(arr.shape) != tuple(want):
      raise ValueError(f"tensor {name!r} has shape {tuple(arr.shape)}, expected {want} for config {cfg}")
    return from_hf(kind, arr, shape)

  return get


# ---------------------------------------------------------------------------------------- export
def save_hf(model: Any, path: str, dtype: Any = None) -> None:
  """Write `model` as `path/model.safetensors` + `path/config.json` (HF layout; tied head omitted).

  `path` may be a `gs://` URL (written to a local temporary directory first, then uploaded).

  Gathers the whole model to host memory (peak = one full copy of the params). `dtype`: numpy/jnp dtype
  for the saved tensors (default: param dtype).
  """
  from simko_jax import storage
  if storage.is_remote(path):  # safetensors writes local files: write them locally, then upload
    import tempfile
    with tempfile.TemporaryDirectory(prefix="simko_export_") as local:
      save_hf(model, local, dtype)
      storage.upload_tree(local, path)
    return
  import jax
  from safetensors.numpy import save_file

  from simko_jax.models.transformer import layer_param_specs
  cfg: ModelConfig = model.cfg
  os.makedirs(path, exist_ok=True)
  tensors: dict[str, np.ndarray] = {}

  def host(x):
    arr = np.asarray(jax.device_get(x))
    return arr if dtype is None else arr.astype(np.dtype(dtype))

  for param in ("embed", "final_norm") + (() if cfg.tie_word_embeddings else ("lm_head",)):
    name, kind = hf_tensor_name(param, None)
    tensors[name] = to_hf(kind, host(getattr(model, param).get_value()))
  for param in layer_param_specs(cfg):
    stacked = host(getattr(model.layers, param).get_value())
    for i in range(cfg.num_layers):
      name, kind = hf_tensor_name(param, i)
      tensors[name] = to_hf(kind, stacked[i])
  save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
  hf_cfg = cfg.to_hf_config()
  saved_dtype = np.dtype(dtype) if dtype is not None else np.dtype(cfg.param_dtype)
  hf_cfg["torch_dtype"] = hf_cfg["dtype"] = str(saved_dtype.name)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_cfg, f, indent=2)
