"""`opt_state_shardings`: Adam moments sharded exactly like their params, scalars replicated, and the
sharded init has the same values as a plain `tx.init`."""

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from simko_jax.models.config import tiny_llama3
from simko_jax.models.transformer import Transformer
from simko_jax.parallel import make_mesh, model_shardings, opt_state_shardings, shard_model


def test_adam_moments_follow_param_shardings():
  mesh = make_mesh(2, 2, 2)
  model = Transformer(tiny_llama3(num_heads=8, num_kv_heads=2, head_dim=8), rngs=nnx.Rngs(0))
  with jax.set_mesh(mesh):
    shard_model(model, mesh)
  _, params = nnx.split(model)
  param_sh = model_shardings(model, mesh)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(optax.constant_schedule(1e-3)))
  shardings = opt_state_shardings(tx, params, param_sh, mesh)
  state = jax.jit(tx.init, out_shardings=shardings)(params)
  adam = state[1][0]
  want = [s.spec for s in jax.tree.leaves(param_sh)]
  assert [x.sharding.spec for x in jax.tree.leaves(adam.mu)] == want
  assert [x.sharding.spec for x in jax.tree.leaves(adam.nu)] == want
  assert any(spec != P() for spec in want)
  assert adam.count.sharding.spec == P() and adam.count.sharding.mesh.shape == mesh.shape
  for got, ref in zip(jax.tree.leaves(state), jax.tree.leaves(tx.init(jax.device_get(params)))):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
