"""A checkpoint saved by `RunCheckpointer` on mesh (2, 2, 2) restores onto (8, 1, 1) and (1, 1, 8).

The restored params / optimizer state have the *target* mesh's shardings and bit-identical values
(8 fake CPU devices in one process; Orbax reshards on restore).
"""

import jax
import numpy as np
import pytest
from flax import nnx
from ml_collections import ConfigDict

from simko_jax.models.config import tiny_qwen2
from simko_jax.models.transformer import Transformer
from simko_jax.parallel import make_mesh, model_shardings, shard_model
from simko_jax.train.checkpoint import RunCheckpointer
from simko_jax.train.step import make_optimizer

OPTIM = ConfigDict(dict(learning_rate=1e-2, schedule="constant", warmup_steps=0, weight_decay=0.0,
                        b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0))


def build(shape, seed):
  """(params, opt_state) of a tiny Qwen2 placed on a mesh of `shape`; Adam moments made non-zero."""
  mesh = make_mesh(*shape)
  model = Transformer(tiny_qwen2(num_heads=8, num_kv_heads=8, head_dim=8, intermediate_size=64),
                      rngs=nnx.Rngs(seed))
  with jax.set_mesh(mesh):
    shard_model(model, mesh)
  _, params = nnx.split(model)
  tx, _ = make_optimizer(OPTIM, 10)
  with jax.set_mesh(mesh):
    opt_state = jax.jit(tx.init)(params)
    grads = jax.tree.map(lambda p: 0.01 * jax.numpy.sin(p + 1.0), params)
    updates, opt_state = jax.jit(tx.update)(grads, opt_state, params)
  return mesh, model, params, opt_state


def abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("target", [(8, 1, 1), (1, 1, 8)])
def test_restore_onto_other_mesh_shape(tmp_path, target):
  _, _, params, opt_state = build((2, 2, 2), seed=3)
  saved_params, saved_opt = leaves(params), leaves(opt_state)
  assert any(len(x.sharding.device_set) == 8 and not x.sharding.is_fully_replicated
             for x in jax.tree.leaves(params))
  ckpt = RunCheckpointer(str(tmp_path / "checkpoints"), keep=2, every=1, async_save=False)
  key = jax.random.key(7)
  ckpt.save(5, params, opt_state, key, {"epoch": 1}, {"model_config": {"hidden_size": 64}}, force=True)
  ckpt.close()

  mesh, model, target_params, target_opt = build(target, seed=4)   # different values: only a real restore matches
  assert not np.array_equal(leaves(target_params)[0], saved_params[0])
  expected_shardings = model_shardings(model, mesh)
  restorer = RunCheckpointer(str(tmp_path / "checkpoints"), keep=2, every=1, async_save=False)
  rng_data = jax.random.key_data(key)
  step, p, o, rng, data_state, meta = restorer.restore(
      abstract(target_params), abstract(target_opt), jax.ShapeDtypeStruct(rng_data.shape, rng_data.dtype))
  restorer.close()
  assert step == 5 and data_state == {"epoch": 1} and meta["step"] == 5
  np.testing.assert_array_equal(jax.random.key_data(rng), rng_data)
  for got, want in zip(leaves(p), saved_params):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(leaves(o), saved_opt):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(jax.tree.leaves(p), jax.tree.leaves(expected_shardings)):
    assert got.sharding.mesh.shape_tuple == mesh.shape_tuple
    assert got.sharding.spec == want.spec, (got.sharding.spec, want.spec)
  for got, want in zip(jax.tree.leaves(o), jax.tree.leaves(target_opt)):
    assert got.sharding.is_equivalent_to(want.sharding, got.ndim)
