"""Mesh construction, logical-axis rules and sharding helpers (jax only; flax imported lazily)."""

from simko_jax.parallel.mesh import MESH_AXES, make_mesh
from simko_jax.parallel.optim import opt_state_shardings
from simko_jax.parallel.rules import (DEFAULT_RULES, Rules, constrain, current_rules, logical_axes_of,
                                      logical_to_sharding, logical_to_spec, model_shardings, shard_model,
                                      use_rules)

__all__ = ["MESH_AXES", "make_mesh", "opt_state_shardings", "DEFAULT_RULES", "Rules", "constrain", "current_rules",
           "logical_axes_of", "logical_to_sharding", "logical_to_spec", "model_shardings", "shard_model",
           "use_rules"]
