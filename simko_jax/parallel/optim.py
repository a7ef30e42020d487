"""Shardings for an optax optimizer state: every params-shaped subtree (Adam's mu / nu, ...) gets the
params' own shardings, everything else (step counts, scalars) is replicated.

Why: `jax.jit(tx.init)(params)` alone lets XLA place `zeros_like(param)` outputs anywhere; it picks
*replicated*, so a 7B model's fp32 Adam moments (61 GB) would sit on every device. Use
  opt_shardings = opt_state_shardings(tx, params, param_shardings, mesh)
  opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec


def opt_state_shardings(tx: Any, params: Any, param_shardings: Any, mesh) -> Any:
  """A pytree of `NamedSharding`s with the structure of `tx.init(params)` (see module doc).

  `params`: arrays or `ShapeDtypeStruct`s; `param_shardings`: same structure, `NamedSharding` leaves
  (e.g. `simko_jax.parallel.model_shardings(model, mesh)`).
  """
  import optax

  replicated = NamedSharding(mesh, PartitionSpec())
  abstract = jax.eval_shape(tx.init, params)
  return optax.tree_map_params(
      tx, lambda _, sharding: sharding, abstract, param_shardings,
      transform_non_params=lambda _: replicated)
