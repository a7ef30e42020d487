"""Mesh construction, logical-axis rules, and sharded forward == unsharded (8 fake CPU devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from simko_jax.parallel import (DEFAULT_RULES, constrain, logical_to_sharding, logical_to_spec, make_mesh,
                                shard_model)


def test_make_mesh_validates_device_count():
  n = jax.device_count()
  mesh = make_mesh(1, 1, n)
  assert mesh.axis_names == ("data", "fsdp", "tensor") and mesh.devices.size == n
  with pytest.raises(ValueError, match=f"product is {n}"):
    make_mesh(n, 2, 1)


def test_logical_rules_drop_nondivisible_and_reused_axes():
  mesh = make_mesh(2, 2, 2)
  assert logical_to_spec(("batch", "length", "embed"), mesh, DEFAULT_RULES) == P(("data", "fsdp"), None, None)
  assert logical_to_spec(("vocab", "embed"), mesh, DEFAULT_RULES, (256, 64)) == P("tensor", "fsdp")
  assert logical_to_spec(("layers", "embed", "kv_heads", "head_dim"), mesh, DEFAULT_RULES,
                         (2, 64, 1, 16)) == P(None, "fsdp", None, None)
  assert logical_to_spec(("batch",), mesh, DEFAULT_RULES, (2,)) == P("data")
  sh = logical_to_sharding(("vocab", "embed"), mesh, DEFAULT_RULES)
  assert sh.spec == P("tensor", "fsdp") and sh.mesh is mesh


def test_constrain_is_noop_without_mesh():
  x = jnp.ones((4, 8))
  assert constrain(x, ("batch", "embed")) is x


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 1, 8)])
def test_sharded_forward_matches_unsharded(shape):
  from simko_jax.models import Transformer, tiny_llama3, tiny_qwen2
  from tests.models.hf_helpers import left_padded_batch
  for cfg in (tiny_llama3(num_heads=8, num_kv_heads=2, head_dim=8), tiny_qwen2()):
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    tokens, mask = left_padded_batch(cfg.vocab_size, lengths=(8, 5, 3, 1), total=8)
    tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)
    ref = np.asarray(model(tokens, attention_mask_BxT=mask))
    mesh = make_mesh(*shape)
    shard_model(model, mesh)
    emb = model.embed.get_value()
    assert emb.sharding.spec == logical_to_spec(("vocab", "embed"), mesh, shape=emb.shape)
    assert len(model.layers.w_gate.get_value().sharding.device_set) == 8
    graphdef, state = nnx.split(model)
    with jax.set_mesh(mesh):
      batch_sh = logical_to_sharding(("batch", "length"), mesh, shape=tokens.shape)
      out = jax.jit(lambda s, t, m: nnx.merge(graphdef, s)(t, attention_mask_BxT=m))(
          state, jax.device_put(tokens, batch_sh), jax.device_put(mask, batch_sh))
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)


def test_sharded_load_and_decode(tmp_path):
  """load_pretrained(mesh=...) places params directly; decode with a sharded cache."""
  from simko_jax.models import Transformer, cache_shardings, load_pretrained, save_hf, tiny_qwen3
  cfg = tiny_qwen3()
  save_hf(Transformer(cfg, rngs=nnx.Rngs(3)), str(tmp_path))
  mesh = make_mesh(2, 2, 2)
  model, _ = load_pretrained(str(tmp_path), mesh=mesh)
  ref_model, _ = load_pretrained(str(tmp_path))
  assert model.layers.wq.get_value().sharding.spec == P(None, "fsdp", "tensor", None)
  tokens = jnp.asarray(np.arange(8, dtype=np.int32).reshape(2, 4) + 3)
  cache = ref_model.init_cache(2, 8)
  kv = jnp.asarray(np.array([[1] * 4 + [0] * 4] * 2, np.int32))
  pos = jnp.asarray(np.tile(np.arange(4, dtype=np.int32), (2, 1)))
  ref, _ = ref_model.decode(tokens, pos, cache, jnp.int32(0), kv)
  graphdef, state = nnx.split(model)
  with jax.set_mesh(mesh):
    cache = jax.device_put(cache, cache_shardings(cache, mesh))
    out, new_cache = jax.jit(lambda s, *a: nnx.merge(graphdef, s).decode(*a), donate_argnums=(3,))(
        state, tokens, pos, cache, jnp.int32(0), kv)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=0)
  assert new_cache["k"].shape == (cfg.num_layers, 2, 8, cfg.num_kv_heads, cfg.head_dim)


def test_model_shardings_as_jit_out_shardings():
  """`model_shardings` gives an nnx.State of NamedShardings usable as jit out_shardings (sharded init)."""
  from simko_jax.models import Transformer, tiny_llama3
  from simko_jax.parallel import model_shardings
  model = Transformer(tiny_llama3(num_heads=8, head_dim=8), rngs=nnx.Rngs(0))
  mesh = make_mesh(2, 2, 2)
  graphdef, state = nnx.split(model)
  out = jax.jit(lambda s: s, out_shardings=model_shardings(model, mesh))(state)
  assert out["layers"]["wq"].get_value().sharding.spec == P(None, "fsdp", "tensor", None)
  assert out["final_norm"].get_value().sharding.spec == P(None)
