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
    assert len(model.layers.w_gate_up.get_value().sharding.device_set) == 8
    graphdef, state = nnx.split(model)
    with jax.set_mesh(mesh):
      batch_sh = logical_to_sharding(("batch", "length"), mesh, shape=tokens.shape)
      out = jax.jit(lambda s, t, m: nnx.merge(graphdef, s)(t, attention_mask_BxT=m))(
          state, jax.device_put(tokens, batch_sh), jax.device_put(mask, batch_sh))
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)


def test_sharded_load_and_decode(tmp_path):
  """load_pretrained(mesh=...) places params directly (fused q/k/v split by kv head over "tensor");
  prefill + one-token steps under the mesh give the unsharded model's logits."""
  from simko_jax.models import Transformer, load_pretrained, save_hf, tiny_qwen3
  from simko_jax.models.inference import decode_step, prefill, rope_table, unstack_layers
  cfg = tiny_qwen3()
  save_hf(Transformer(cfg, rngs=nnx.Rngs(3)), str(tmp_path))
  mesh = make_mesh(2, 2, 2)
  model = load_pretrained(str(tmp_path), mesh=mesh)
  ref_model = load_pretrained(str(tmp_path))
  assert model.layers.w_qkv.get_value().sharding.spec == P(None, "fsdp", "tensor", None, None)
  assert model.layers.wo.get_value().sharding.spec == P(None, "tensor", "fsdp")
  tokens = jnp.asarray(np.arange(16, dtype=np.int32).reshape(2, 8) + 3)
  kv = jnp.asarray(np.array([[0, 0] + [1] * 6, [1] * 8], np.int32))
  pos = jnp.maximum(jnp.cumsum(kv, -1) - 1, 0)

  def run(graphdef, state):
    m = nnx.merge(graphdef, state)
    layers, rope = unstack_layers(m), rope_table(cfg, 8)
    cache = prefill(m, layers, tokens[:, :6], pos[:, :6], kv[:, :6], rope, cache_len=8)
    logits, cache = decode_step(m, layers, tokens[:, 6], pos[:, 6], cache, jnp.int32(6), kv, rope, first_slot=6)
    logits7, _ = decode_step(m, layers, tokens[:, 7], pos[:, 7], cache, jnp.int32(7), kv, rope, first_slot=6)
    return jnp.stack([logits, logits7], axis=1)

  ref = jax.jit(lambda s: run(nnx.split(ref_model)[0], s))(nnx.split(ref_model)[1])
  graphdef, state = nnx.split(model)
  with jax.set_mesh(mesh):
    out = jax.jit(lambda s: run(graphdef, s))(state)
  full = ref_model(tokens, attention_mask_BxT=kv)[:, 6:]
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(ref), np.asarray(full), atol=1e-5, rtol=0)


def test_model_shardings_as_jit_out_shardings():
  """`model_shardings` gives an nnx.State of NamedShardings usable as jit out_shardings (sharded init)."""
  from simko_jax.models import Transformer, tiny_llama3
  from simko_jax.parallel import model_shardings
  model = Transformer(tiny_llama3(num_heads=8, head_dim=8), rngs=nnx.Rngs(0))
  mesh = make_mesh(2, 2, 2)
  graphdef, state = nnx.split(model)
  out = jax.jit(lambda s: s, out_shardings=model_shardings(model, mesh))(state)
  assert out["layers"]["w_qkv"].get_value().sharding.spec == P(None, "fsdp", "tensor", None, None)
  assert out["layers"]["wo"].get_value().sharding.spec == P(None, "tensor", "fsdp")
  assert out["final_norm"].get_value().sharding.spec == P(None)
