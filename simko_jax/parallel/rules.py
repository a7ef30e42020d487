"""Logical axis names -> mesh axes, and sharding helpers for params and activations.

Every parameter / activation dimension gets a *logical* name ("vocab", "embed", "heads", ...). A rules
tuple `((logical_name, mesh_axes), ...)` maps each name to a mesh axis, a tuple of mesh axes, or None
(replicated). Lookups are shape-aware: a mesh axis that does not divide the dimension, or that was
already used by an earlier dimension of the same array, is dropped (that dimension is replicated over
it), so e.g. 2 kv heads on an 8-way "tensor" axis simply stay replicated.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]

DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    # Rows of the embedding lookup's output: the batch axes the table [V, D/fsdp] is *not* split over,
    # so the gather runs where the table lives; one all-to-all over fsdp then gives ("batch", ...).
    # (Gathering straight into ("batch", ...) made XLA replicate the f32 gradient of the lookup
    # [rows, L, D] to scatter it into the fsdp-split table, every micro-batch, when data > 1.)
    ("lookup_batch", "data"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("head_dim", None),
    ("length", None),
    ("cache_length", None),
    ("layers", None),
    ("norm", None),
)

_ACTIVE_RULES: list[Rules] = [DEFAULT_RULES]


@contextlib.contextmanager
def use_rules(rules: Rules) -> Iterator[Rules]:
  """Context manager making `rules` the ones `constrain` (and rules=None lookups) use."""
  _ACTIVE_RULES.append(tuple(rules))
  try:
    yield rules
  finally:
    _ACTIVE_RULES.pop()


def current_rules() -> Rules:
  return _ACTIVE_RULES[-1]


def _mesh_axis_sizes(mesh: Any) -> dict[str, int]:
  return dict(zip(mesh.axis_names, mesh.axis_sizes if hasattr(mesh, "axis_sizes") else mesh.devices.shape))


def logical_to_spec(logical_axes: Sequence[str | None], mesh: Any, rules: Rules | None = None,
                    shape: Sequence[int] | None = None) -> PartitionSpec:
  """PartitionSpec for an array whose dims are named `logical_axes` (see module doc for dropping)."""
  rules = current_rules() if rules is None else rules
  table = dict(rules)
  sizes = _mesh_axis_sizes(mesh)
  used: set[str] = set()
  spec = []
  for i, name in enumerate(logical_axes):
    target = table.get(name) if name is not None else None
    if target is None:
      spec.append(None)
      continue
    axes = (target,) if isinstance(target, str) else tuple(target)
    kept = []
    dim = None if shape is None else int(shape[i])
    prod = 1
    for ax in axes:
      if ax not in sizes or ax in used or sizes[ax] == 1:
        continue
      if dim is not None and dim % (prod * sizes[ax]) != 0:
        continue
      kept.append(ax)
      prod *= sizes[ax]
    used.update(kept)
    spec.append(None if not kept else (kept[0] if len(kept) == 1 else tuple(kept)))
  return PartitionSpec(*spec)


def logical_to_sharding(logical_axes: Sequence[str | None], mesh: Mesh, rules: Rules | None = None,
                        shape: Sequence[int] | None = None) -> NamedSharding:
  """`NamedSharding(mesh, spec)` for logical axis names under `rules` (default: active rules)."""
  return NamedSharding(mesh, logical_to_spec(logical_axes, mesh, rules, shape))


def constrain(x: jax.Array, logical_axes: Sequence[str | None], rules: Rules | None = None) -> jax.Array:
  """`with_sharding_constraint` by logical names under the mesh set by `jax.set_mesh`; no-op without one."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is None or mesh.empty or mesh.size == 1:
    return x
  spec = logical_to_spec(logical_axes, mesh, rules, x.shape)
  return jax.lax.with_sharding_constraint(x, spec)


def logical_axes_of(variable: Any) -> tuple[str | None, ...] | None:
  """The logical axes stored on an `nnx.Variable` (metadata key `logical_axes`), or None."""
  meta = variable.get_metadata() if hasattr(variable, "get_metadata") else {}
  axes = meta.get("logical_axes")
  return None if axes is None else tuple(axes)


def model_shardings(model: Any, mesh: Mesh, rules: Rules | None = None) -> Any:
  """`nnx.State` of `NamedSharding`s for every variable of `model` (replicated if no logical axes)."""
  from flax import nnx  # local import: keep this floor importable with jax alone

  def one(v):
    axes = logical_axes_of(v)
    if axes is None:
      return v.replace(NamedSharding(mesh, PartitionSpec()))
    return v.replace(logical_to_sharding(axes, mesh, rules, v.get_value().shape))

  return jax.tree.map(one, nnx.state(model), is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: Any, mesh: Mesh, rules: Rules | None = None) -> Any:
  """Place every variable of an NNX `model` on `mesh` by its `logical_axes` metadata (in place).

  Variables without logical axes are replicated. Returns `model` for chaining.
  """
  from flax import nnx

  for _, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Variable):
      value = node.get_value()
      if not hasattr(value, "shape"):
        continue
      axes = logical_axes_of(node)
      sharding = (NamedSharding(mesh, PartitionSpec()) if axes is None
                  else logical_to_sharding(axes, mesh, rules, value.shape))
      node.set_value(jax.device_put(value, sharding))
  return model
