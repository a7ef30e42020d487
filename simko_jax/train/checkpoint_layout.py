"""Checkpoints saved before the fused decoder layout (issue 22): detected from their metadata, converted.

Until then a checkpoint stored each layer's projections apart, stacked over L: wq [L, D, H, Dh], wk / wv
[L, D, K, Dh], wo [L, H, Dh, D], bq [L, H, Dh], bk / bv [L, K, Dh], w_gate / w_up [L, D, F]. Now they are
w_qkv, b_qkv, a flat wo [L, H*Dh, D] and w_gate_up (`models.layout`). Restoring such a checkpoint reads
its arrays in the old layout (replicated on the target mesh) and fuses them, exactly (reshapes and
concatenations), into the target's layout and shardings. This applies to every params-shaped subtree of
the restored tree, so the params and Adam's moments (elementwise state of the same params) convert alike.

  if saved_layers_unfused(step_dir):
    old_target = unfused_target(cfg, target)          # what the checkpoint holds
    restored = convert_to_fused(cfg, <restore old_target>, target)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from simko_jax import storage
from simko_jax.models.config import ModelConfig
from simko_jax.models.layout import fuse, layer_param_specs

FORMAT_CHANGE = ("the checkpoint stores separate q/k/v and gate/up projections (written before the fused "
                 "decoder layout of issue 22)")


def unfused_layer_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """The old per-layer param shapes (without L) for `cfg`."""
  d, f, dh, h, k = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim, cfg.num_heads, cfg.num_kv_heads
  shapes = {"attn_norm": (d,), "wq": (d, h, dh), "wk": (d, k, dh), "wv": (d, k, dh), "wo": (h, dh, d),
            "mlp_norm": (d,), "w_gate": (d, f), "w_up": (d, f), "w_down": (f, d)}
  if cfg.attention_bias:
    shapes.update(bq=(h, dh), bk=(k, dh), bv=(k, dh))
  if cfg.qk_norm:
    shapes.update(q_norm=(dh,), k_norm=(dh,))
  return shapes


def saved_layers_unfused(step_dir) -> bool:
  """Whether the `params` item of an Orbax step directory holds the old layer names (wq, w_gate ...)."""
  path = storage.join(step_dir, "params", "_METADATA")
  try:
    tree = json.loads(path.read_text()).get("tree_metadata", {})
  except (OSError, ValueError, AttributeError):  # unreadable metadata: the restore itself will say so
    return False
  return any(key.endswith("'layers', 'wq')") for key in tree)


def _raw(mapping: Mapping) -> Mapping:
  """The mapping itself; for an nnx.State its raw mapping (indexing a State wraps nested dicts in States,
  which would change the tree structure)."""
  return mapping.raw_mapping if isinstance(mapping, nnx.State) else mapping


def _rebuild(template: Any, children: dict) -> Any:
  """A mapping of `template`'s type (dict or nnx.State) holding `children`."""
  return nnx.State(children) if isinstance(template, nnx.State) else dict(children)


def _map_layers(fn, tree: Any, *others: Any) -> Any:
  """`tree` with every layers mapping (one holding "w_qkv" or "wq") replaced by fn(mapping, *others'),
  the other trees walked in parallel; other nodes are rebuilt with their own type."""
  if isinstance(tree, Mapping):
    if "w_qkv" in tree or "wq" in tree:
      return fn(_raw(tree), *map(_raw, others))
    return _rebuild(tree, {k: _map_layers(fn, v, *(_raw(o)[k] for o in others)) for k, v in _raw(tree).items()})
  if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # optax NamedTuple states
    return type(tree)(*(_map_layers(fn, v, *(getattr(o, f) for o in others))
                        for f, v in zip(tree._fields, tree)))
  if isinstance(tree, (tuple, list)):
    return type(tree)(_map_layers(fn, v, *(o[i] for o in others)) for i, v in enumerate(tree))
  return tree


def _leaf(node):
  return node.get_value() if isinstance(node, nnx.Variable) else node


def _wrap(template, value):
  return template.replace(value) if isinstance(template, nnx.Variable) else value


def unfused_target(cfg: ModelConfig, target: Any) -> Any:
  """`target` (abstract arrays, `ShapeDtypeStruct`s with shardings) with every layers mapping in the old
  layout: the old names and shapes, replicated on the mesh of the new params (a one-off conversion)."""

  def old(layers):  # (a raw mapping: rebuilt as a dict)
    some = next(iter(layers.values()))  # every layer param shares the dtype (and the mesh)
    sds = _leaf(some)
    mesh = getattr(getattr(sds, "sharding", None), "mesh", None)
    sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec())
    return _rebuild(layers, {
        name: _wrap(some, jax.ShapeDtypeStruct((cfg.num_layers, *shape), sds.dtype, sharding=sharding))
        for name, shape in unfused_layer_shapes(cfg).items()})

  return _map_layers(old, target)


def convert_to_fused(cfg: ModelConfig, restored: Any, target: Any) -> Any:
  """`restored` (the old layout, as read with `unfused_target`) in the layout and shardings of `target`."""

  def fused(old_layers, target_layers):
    arrays = {name: _leaf(v) for name, v in old_layers.items()}
    sources = {name: (a.reshape(*a.shape[:-2], -1) if name in ("wq", "wk", "wv", "bq", "bk", "bv")
                      else a.reshape(a.shape[0], -1, a.shape[-1]) if name == "wo" else a)
               for name, a in arrays.items()}
    out = {}
    for name in layer_param_specs(cfg):
      want = _leaf(target_layers[name])
      value = fuse(cfg, name, sources).astype(want.dtype)
      sharding = getattr(want, "sharding", None)
      out[name] = _wrap(target_layers[name], value if sharding is None else jax.device_put(value, sharding))
    return _rebuild(target_layers, out)

  return _map_layers(fused, restored, target)
