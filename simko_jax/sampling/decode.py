"""One-token decode step that updates a kv-major KV cache in place (the sampler's hot loop).

  cache_kv = to_kv_major(model.init_cache(...) after prefill)     # [L, B, S, KVH, Dh] -> [L, B, KVH, S, Dh]
  logits_BxV, cache_kv = decode_step(model, token_B, position_B, cache_kv, slot, kv_mask_BxS)

Same math as `Transformer.decode` with T = 1 (tests check it against the model's full forward), with
two layout changes, both measured on SmolLM2-135M, B=32, S=192, 2 CPU cores:
  * the layer `lax.scan` *carries* the whole cache and writes the new token's key/value with one
    `dynamic_update_slice` at (layer, :, :, slot). `Transformer.decode` passes each layer's cache as a
    scan input and returns it as a scan output, so every step copies the whole cache (~0.17 s of a
    ~0.37 s step). Carried through `lax.while_loop`, the cache stays in one buffer for the whole decode.
  * kv-major [B, KVH, S, Dh] per layer: the attention contractions are then plain batched matmuls over
    (B, KVH) with contiguous [S, Dh] blocks; with the model's [B, S, KVH, Dh] XLA:CPU transposes the
    layer's cache on every step (attention over 30 layers: 45 ms vs 130 ms).
TODO(models): adopt both in `Transformer.decode` / `init_cache` and call it from here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.models.attention import attention_mask
from simko_jax.models.layers import rms_norm, swiglu_mlp
from simko_jax.models.rope import apply_rope, inv_frequencies, rope_cos_sin
from simko_jax.models.transformer import ACT_AXES
from simko_jax.parallel import constrain

KV_MAJOR_AXES = ("layers", "batch", "kv_heads", "cache_length", "head_dim")
_NEG = -0.7 * float(jnp.finfo(jnp.float32).max)  # the masked-score value of models.attention


def to_kv_major(cache: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """{"k","v"}: [L, B, S, KVH, Dh] (the model's layout) -> [L, B, KVH, S, Dh] (one copy, after prefill)."""
  return {name: jnp.swapaxes(x, 2, 3) for name, x in cache.items()}


def _attend(q_BxNxH, k_BxKxSxH, v_BxKxSxH, mask_BxS):
  """`models.attention.gqa_attention` (impl "xla") for one query per row on kv-major keys/values:
  float32 scores and softmax, head n uses kv head n // (N / KVH). Returns [B, 1, N, H] in q's dtype."""
  b, n, h = q_BxNxH.shape
  kvh = k_BxKxSxH.shape[1]
  q = q_BxNxH.reshape(b, kvh, n // kvh, h)
  scores = jnp.einsum("bkgh,bksh->bkgs", q, k_BxKxSxH.astype(q.dtype),
                      preferred_element_type=jnp.float32) * (1.0 / float(h) ** 0.5)
  scores = jnp.where(mask_BxS[:, None, None, :], scores, _NEG)
  probs = jax.nn.softmax(scores, axis=-1)
  out = jnp.einsum("bkgs,bksh->bkgh", probs.astype(v_BxKxSxH.dtype), v_BxKxSxH,
                   preferred_element_type=jnp.float32)
  return out.reshape(b, 1, n, h).astype(q_BxNxH.dtype)


def _project_qkv(cfg, h_Bx1xD, p, cos, sin):
  """q [B,1,N,Dh], k/v [B,1,KVH,Dh] for the new token (as in the model's `_block`)."""
  q = jnp.einsum("btd,dnh->btnh", h_Bx1xD, p["wq"])
  k = jnp.einsum("btd,dkh->btkh", h_Bx1xD, p["wk"])
  v = jnp.einsum("btd,dkh->btkh", h_Bx1xD, p["wv"])
  if cfg.attention_bias:
    q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
  if cfg.qk_norm:
    q = rms_norm(q, p["q_norm"], cfg.rms_norm_eps)
    k = rms_norm(k, p["k_norm"], cfg.rms_norm_eps)
  return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


def decode_step(model, token_B: jax.Array, position_B: jax.Array, cache: dict[str, jax.Array],
                slot: jax.Array, kv_mask_BxS: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Feed one token per row at cache slot `slot` (traced int32); returns (float32 logits [B, V], cache).

  cache: kv-major {"k","v"} [L, B, KVH, S, Dh] (`to_kv_major`); updated in place when carried/donated.
  kv_mask_BxS must already be 1 at `slot` for real tokens (the model's `decode` contract); the query
  attends to slots s <= slot with kv_mask 1. position_B: RoPE positions (cumsum(mask) - 1 convention).
  """
  cfg = model.cfg
  s = cache["k"].shape[3]
  slot = jnp.asarray(slot, jnp.int32)
  x = model.embed.get_value()[token_B[:, None]].astype(cfg.dtype)
  x = constrain(x, ACT_AXES)
  cos, sin = rope_cos_sin(position_B[:, None], inv_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling))
  mask_Bx1xS = attention_mask(1, s, slot, kv_mask_BxS)
  zero = jnp.int32(0)

  def layer(carry, xs):
    x, k_all, v_all = carry
    p, l = xs
    p = jax.tree.map(lambda a: a.astype(cfg.dtype), p)
    h = rms_norm(x, p["attn_norm"], cfg.rms_norm_eps)
    q, k, v = _project_qkv(cfg, h, p, cos, sin)
    q = constrain(q, ("batch", "length", "heads", "head_dim"))
    at = (l, zero, zero, slot, zero)
    # [B, 1, KVH, Dh] -> [1, B, KVH, 1, Dh] written at (layer, :, :, slot): in place, the cache is a carry.
    k_all = jax.lax.dynamic_update_slice(k_all, jnp.swapaxes(k, 1, 2)[None].astype(k_all.dtype), at)
    v_all = jax.lax.dynamic_update_slice(v_all, jnp.swapaxes(v, 1, 2)[None].astype(v_all.dtype), at)
    attn = _attend(q[:, 0], k_all[l], v_all[l], mask_Bx1xS[:, 0])
    x = x + jnp.einsum("btnh,nhd->btd", attn, p["wo"]).astype(x.dtype)
    x = constrain(x, ACT_AXES)
    h = rms_norm(x, p["mlp_norm"], cfg.rms_norm_eps)
    x = x + swiglu_mlp(h, p["w_gate"], p["w_up"], p["w_down"]).astype(x.dtype)
    return (constrain(x, ACT_AXES), k_all, v_all), None

  params = model.layers.stacked(cfg)
  layers = jnp.arange(cfg.num_layers, dtype=jnp.int32)
  (x, k_all, v_all), _ = jax.lax.scan(layer, (x, cache["k"], cache["v"]), (params, layers))
  k_all = constrain(k_all, KV_MAJOR_AXES)
  v_all = constrain(v_all, KV_MAJOR_AXES)
  h = rms_norm(x[:, 0], model.final_norm.get_value().astype(cfg.dtype), cfg.rms_norm_eps)
  w = model.unembedding().astype(cfg.dtype)
  logits = jnp.einsum("bd,dv->bv", h, w, preferred_element_type=jnp.float32)
  return constrain(logits, ("batch", "vocab")), {"k": k_all, "v": v_all}
