"""A checkpoint written in the layer layout before issue 22 (wq / wk / wv / wo [H, Dh, D] / w_gate / w_up)
restores into today's fused layout: params and Adam moments, on a (2, 2, 2) mesh, and for evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from simko_jax.models.config import tiny_qwen2
from simko_jax.models.transformer import Transformer
from simko_jax.parallel import make_mesh, shard_model
from simko_jax.train.checkpoint import CheckpointError, RunCheckpointer
from simko_jax.train.step import make_optimizer

OPTIM = ConfigDict(dict(learning_rate=1e-2, schedule="constant", warmup_steps=0, weight_decay=0.0,
                        b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0))
CFG = tiny_qwen2(num_heads=4, num_kv_heads=2, head_dim=8)  # Q = 2 query heads per kv head, q/k/v biases


def old_layers(new: dict) -> dict:
  """The pre-issue-22 layer params, written out by hand from the fused ones (numpy, stacked over L)."""
  l, d, k, q2, dh = new["w_qkv"].shape
  q = q2 - 2
  h = k * q
  w, b = new["w_qkv"], new["b_qkv"]
  out = {name: new[name] for name in ("attn_norm", "mlp_norm", "w_down")}
  out.update(wq=w[:, :, :, :q].reshape(l, d, h, dh), wk=w[:, :, :, q], wv=w[:, :, :, q + 1],
             bq=b[:, :, :q].reshape(l, h, dh), bk=b[:, :, q], bv=b[:, :, q + 1],
             wo=new["wo"].reshape(l, h, dh, d), w_gate=new["w_gate_up"][:, :, 0], w_up=new["w_gate_up"][:, :, 1])
  return out


def as_old_state(params: nnx.State) -> nnx.State:
  """An nnx.State of the old layout, as `nnx.split` of the old model gave it."""
  pure = jax.tree.map(np.asarray, nnx.to_pure_dict(params))
  pure["layers"] = old_layers(pure["layers"])
  return nnx.State(jax.tree.map(lambda a: nnx.Param(jnp.asarray(a)), pure))


def grads_of(params):
  return jax.tree.map(lambda p: 0.01 * jnp.sin(p + 1.0), params)


def test_old_layout_checkpoint_restores_fused(tmp_path):
  tx, _ = make_optimizer(OPTIM, 10)
  model = Transformer(CFG, rngs=nnx.Rngs(1))
  _, params = nnx.split(model)
  old = as_old_state(params)
  old_opt = tx.update(grads_of(old), tx.init(old), old)[1]  # non-zero moments, computed in the old layout
  ckpt = RunCheckpointer(str(tmp_path / "checkpoints"), every=1, async_save=False)
  ckpt.save(3, nnx.to_pure_dict(old), old_opt, jax.random.key(7), {"epoch": 0},
            {"model_config": CFG.to_hf_config()}, force=True)
  ckpt.close()

  mesh = make_mesh(2, 2, 2)
  target_model = Transformer(CFG, rngs=nnx.Rngs(2))  # other values: only a real restore matches
  with jax.set_mesh(mesh):
    shard_model(target_model, mesh)
    _, target = nnx.split(target_model)
    target_opt = jax.jit(tx.init)(target)
  abstract = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
  rng = jax.random.key_data(jax.random.key(0))
  ckpt = RunCheckpointer(str(tmp_path / "checkpoints"), every=1, async_save=False)
  step, got_params, got_opt, _, data, _ = ckpt.restore(
      abstract(nnx.to_pure_dict(target)), abstract(target_opt), jax.ShapeDtypeStruct(rng.shape, rng.dtype),
      model_config=CFG.to_hf_config())
  ckpt.close()
  assert step == 3 and data == {"epoch": 0}
  # Params: exactly the model that was saved, with the target's shardings.
  want = nnx.to_pure_dict(params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), got_params, want)
  spec = nnx.to_pure_dict(target)["layers"]["w_qkv"].sharding.spec
  assert got_params["layers"]["w_qkv"].sharding.spec == spec == P(None, "fsdp", "tensor", None, None)
  # Adam moments: those of the same update run in the fused layout (Adam is elementwise).
  want_opt = tx.update(grads_of(params), tx.init(params), params)[1]
  assert jax.tree.structure(got_opt) == jax.tree.structure(target_opt)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=0),
               got_opt, want_opt)


def test_old_layout_policy_loads_for_evaluation(tmp_path):
  from simko_jax.train.policy_source import PolicySource, load_model
  model = Transformer(CFG, rngs=nnx.Rngs(4))
  _, params = nnx.split(model)
  old = as_old_state(params)
  tx, _ = make_optimizer(OPTIM, 10)
  ckpt = RunCheckpointer(str(tmp_path / "checkpoints"), every=1, async_save=False)
  ckpt.save(2, nnx.to_pure_dict(old), tx.init(old), jax.random.key(0), {}, {"model_config": CFG.to_hf_config()},
            force=True)
  ckpt.close()
  source = PolicySource(kind="run", path=str(tmp_path / "checkpoints"), step=2, model_config=CFG.to_hf_config(),
                        meta={})
  loaded = load_model(source, mesh=make_mesh(2, 2, 2))
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               nnx.to_pure_dict(nnx.state(loaded, nnx.Param)), nnx.to_pure_dict(params))


def test_old_layout_without_model_config_fails_with_one_line(tmp_path):
  model = Transformer(CFG, rngs=nnx.Rngs(5))
  _, params = nnx.split(model)
  old = as_old_state(params)
  tx, _ = make_optimizer(OPTIM, 10)
  ckpt = RunCheckpointer(str(tmp_path / "checkpoints"), every=1, async_save=False)
  ckpt.save(1, nnx.to_pure_dict(old), tx.init(old), jax.random.key(0), {}, {}, force=True)
  ckpt.close()
  rng = jax.random.key_data(jax.random.key(0))
  abstract = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
  ckpt = RunCheckpointer(str(tmp_path / "checkpoints"), every=1, async_save=False)
  with pytest.raises(CheckpointError, match="separate q/k/v and gate/up projections") as err:
    ckpt.restore(abstract(nnx.to_pure_dict(params)), abstract(tx.init(params)),
                 jax.ShapeDtypeStruct(rng.shape, rng.dtype))
  assert "\n" not in str(err.value)
