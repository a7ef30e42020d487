"""A checkpoint saved to a bucket (fake-gcs-server) on mesh (2, 2, 2) restores onto (8, 1, 1) from there.

Same check as test_checkpoint_reshard.py, with `RunCheckpointer` pointed at `gs://`: Orbax's tensorstore
writes and reads the bucket, and the restored arrays carry the target mesh's shardings.
"""

import jax
import numpy as np

from simko_jax import storage
from simko_jax.parallel import model_shardings
from simko_jax.train.checkpoint import RunCheckpointer
from tests.parallel.test_checkpoint_reshard import abstract, build, leaves


def test_bucket_checkpoint_restores_onto_other_mesh(gcs):
  directory = f"{gcs.bucket}/reshard/checkpoints"
  _, _, params, opt_state = build((2, 2, 2), seed=3)
  saved_params, saved_opt = leaves(params), leaves(opt_state)
  ckpt = RunCheckpointer(directory, keep=2, every=1, async_save=True)
  key = jax.random.key(7)
  ckpt.save(5, params, opt_state, key, {"epoch": 1}, {"model_config": {"hidden_size": 64}}, force=True)
  ckpt.close()
  assert ckpt.directory == directory and "5" in storage.listdir(directory)

  mesh, model, target_params, target_opt = build((8, 1, 1), seed=4)
  restorer = RunCheckpointer(directory, keep=2, every=1, async_save=False)
  rng_data = jax.random.key_data(key)
  step, p, o, rng, data_state, _ = restorer.restore(
      abstract(target_params), abstract(target_opt), jax.ShapeDtypeStruct(rng_data.shape, rng_data.dtype))
  restorer.close()
  assert step == 5 and data_state == {"epoch": 1}
  np.testing.assert_array_equal(jax.random.key_data(rng), rng_data)
  for got, want in zip(leaves(p) + leaves(o), saved_params + saved_opt):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(jax.tree.leaves(p), jax.tree.leaves(model_shardings(model, mesh))):
    assert got.sharding.mesh.shape_tuple == mesh.shape_tuple and got.sharding.spec == want.spec
