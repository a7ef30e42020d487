"""The losses give the same numbers under jit with inputs sharded over an 8-device CPU mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from simko_jax.losses import fused_policy_loss, simko_loss


@pytest.fixture(scope="module")
def mesh():
  if jax.device_count() < 8:
    pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/conftest.py)")
  return jax.make_mesh((4, 2), ("data", "tensor"), axis_types=(AxisType.Auto,) * 2)


def batch(seed=0, b=8, t=12, v=64, d=16):
  rng = np.random.default_rng(seed)
  return dict(
      logits=jnp.asarray(rng.normal(size=(b, t, v)) * 2, jnp.float32),
      hidden=jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32),
      unembedding=jnp.asarray(rng.normal(size=(d, v)) * 0.3, jnp.float32),
      targets=jnp.asarray(rng.integers(0, v, (b, t))),
      old_logprobs=jnp.asarray(rng.normal(size=(b, t)) - 4, jnp.float32),
      advantages=jnp.asarray(rng.normal(size=(b,)), jnp.float32),
      mask=jnp.asarray(rng.random((b, t)) > 0.2, jnp.float32))


def test_sharded_logits_path_equals_unsharded(mesh):
  x = batch()
  keys = ["logits", "targets", "old_logprobs", "advantages", "mask"]
  args = {k: x[k] for k in keys}

  def loss(params, rest):
    return simko_loss(**params, **rest, alpha=0.1)[0]

  vg = jax.jit(jax.value_and_grad(loss))
  grad_fn = lambda a: vg({"logits": a["logits"]}, {k: v for k, v in a.items() if k != "logits"})
  want_v, want_g = grad_fn(args)
  specs = dict(logits=P("data", None, "tensor"), targets=P("data"), old_logprobs=P("data"),
               advantages=P("data"), mask=P("data"))
  sharded = {k: jax.device_put(args[k], NamedSharding(mesh, specs[k])) for k in keys}
  with jax.set_mesh(mesh):
    got_v, got_g = grad_fn(sharded)
  assert len(got_g["logits"].sharding.device_set) == 8
  np.testing.assert_allclose(got_v, want_v, atol=1e-5)
  np.testing.assert_allclose(got_g["logits"], want_g["logits"], atol=1e-5)


def test_sharded_fused_path_equals_unsharded(mesh):
  x = batch(1)
  keys = ["hidden", "unembedding", "targets", "old_logprobs", "advantages", "mask"]
  args = {k: x[k] for k in keys}

  def loss(params, rest):
    return fused_policy_loss(**params, **rest, chunk_size=16, alpha=0.1)[0]

  vg = jax.jit(jax.value_and_grad(loss))
  diff = ("hidden", "unembedding")
  grad_fn = lambda a: vg({k: a[k] for k in diff}, {k: v for k, v in a.items() if k not in diff})
  want_v, want_g = grad_fn(args)
  specs = dict(hidden=P("data"), unembedding=P(None, "tensor"), targets=P("data"),
               old_logprobs=P("data"), advantages=P("data"), mask=P("data"))
  sharded = {k: jax.device_put(args[k], NamedSharding(mesh, specs[k])) for k in keys}
  with jax.set_mesh(mesh):
    got_v, got_g = grad_fn(sharded)
  np.testing.assert_allclose(got_v, want_v, atol=1e-5)
  for k in ("hidden", "unembedding"):
    np.testing.assert_allclose(got_g[k], want_g[k], atol=1e-5)
