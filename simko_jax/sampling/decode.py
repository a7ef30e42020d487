"""One-token decode step over a per-layer, kv-major KV cache updated in place (the sampler's hot loop).

  layer_params = split_layer_params(model)              # once per sampling call, outside the loop
  cache = to_layer_list(prefilled_cache)                # [L, B, S, KVH, Dh] -> L x [B, KVH, S, Dh]
  logits_BxV, cache = decode_step(model, layer_params, token_B, position_B, cache, slot, kv_mask_BxS)

Same math as `Transformer.decode` with T = 1 (tests check it against the model's full forward), laid out
for speed; each change measured on SmolLM2-135M, B=32, S=192, float32, 2 CPU cores:
  * `Transformer.decode` scans the layers with the cache as scan input and output, so every step
    copies the whole cache (~0.17 s of a ~0.37 s step). Here each layer's cache is its own while-loop
    carry, written by one `dynamic_update_slice` at the new slot (in place).
  * the layers are unrolled with per-layer weights sliced once outside the loop: inside a scan, XLA:CPU
    copies every layer's weights (dynamic-slice, 0.42 GB per step) and cache before its dots.
    Cost: one extra copy of the layer weights in cfg.dtype while sampling, and compile time grows
    with depth (~20 s for 30 layers on 2 cores).
  * kv-major [B, KVH, S, Dh]: the attention contractions are batched matmuls over (B, KVH) on
    contiguous [S, Dh] blocks; with the model's [B, S, KVH, Dh] XLA:CPU transposes the layer's cache
    on every step (attention over 30 layers: 45 ms vs 130 ms).
TODO(models): offer this layout in `Transformer` itself and call it from here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.models.attention import attention_mask
from simko_jax.models.layers import rms_norm, swiglu_mlp
from simko_jax.models.rope import apply_rope, inv_frequencies, rope_cos_sin
from simko_jax.models.transformer import ACT_AXES
from simko_jax.parallel import constrain

LAYER_CACHE_AXES = ("batch", "kv_heads", "cache_length", "head_dim")
_NEG = -0.7 * float(jnp.finfo(jnp.float32).max)  # the masked-score value of models.attention


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


def split_layer_params(model) -> list[dict[str, jax.Array]]:
  """Per-layer param dicts (static slices of the stacked [L, ...] params, cast to cfg.dtype). Call it
  outside the decode loop: sliced once per sampling call instead of once per step and layer."""
  cfg = model.cfg
  stacked = model.layers.stacked(cfg)
  return [{name: a[l].astype(cfg.dtype) for name, a in stacked.items()} for l in range(cfg.num_layers)]


def to_layer_list(cache: dict[str, jax.Array]) -> dict[str, list[jax.Array]]:
  """Model-layout cache {"k","v"}: [L, B, S, KVH, Dh] -> per-layer kv-major lists of [B, KVH, S, Dh]."""
  return {name: [jnp.swapaxes(x[l], 1, 2) for l in range(x.shape[0])] for name, x in cache.items()}


def decode_step(model, layer_params: list[dict[str, jax.Array]], token_B: jax.Array,
                position_B: jax.Array, cache: dict[str, list[jax.Array]], slot: jax.Array,
                kv_mask_BxS: jax.Array) -> tuple[jax.Array, dict[str, list[jax.Array]]]:
  """Feed one token per row at cache slot `slot` (traced int32); returns (float32 logits [B, V], cache).

  layer_params: `split_layer_params(model)`. cache: `to_layer_list` layout {"k","v"}: L arrays
  [B, KVH, S, Dh], each updated in place when carried through a loop. kv_mask_BxS must already be 1
  at `slot` for real tokens (the model's `decode` contract); the query attends to slots s <= slot with
  kv_mask 1. position_B: RoPE positions (cumsum(mask) - 1 convention).
  """
  cfg = model.cfg
  s = cache["k"][0].shape[2]
  slot = jnp.asarray(slot, jnp.int32)
  x = model.embed.get_value()[token_B[:, None]].astype(cfg.dtype)
  x = constrain(x, ACT_AXES)
  inv_freq = inv_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
  cos, sin = rope_cos_sin(position_B[:, None], inv_freq)
  mask_BxS = attention_mask(1, s, slot, kv_mask_BxS)[:, 0]
  zero = jnp.int32(0)
  new_k, new_v = [], []
  # Unrolled over layers (not a scan): each layer's weights and cache are whole buffers that the dots
  # read directly; a scan would dynamic-slice (copy) every layer's weights and cache on every step.
  for p, k_cache, v_cache in zip(layer_params, cache["k"], cache["v"]):
    h = rms_norm(x, p["attn_norm"], cfg.rms_norm_eps)
    q, k, v = _project_qkv(cfg, h, p, cos, sin)
    q = constrain(q, ("batch", "length", "heads", "head_dim"))
    at = (zero, zero, slot, zero)  # [B, 1, KVH, Dh] -> [B, KVH, 1, Dh] at slot, in place
    k_new = jnp.swapaxes(k, 1, 2).astype(k_cache.dtype)
    v_new = jnp.swapaxes(v, 1, 2).astype(v_cache.dtype)
    k_cache = constrain(jax.lax.dynamic_update_slice(k_cache, k_new, at), LAYER_CACHE_AXES)
    v_cache = constrain(jax.lax.dynamic_update_slice(v_cache, v_new, at), LAYER_CACHE_AXES)
    new_k.append(k_cache)
    new_v.append(v_cache)
    attn = _attend(q[:, 0], k_cache, v_cache, mask_BxS)
    x = x + jnp.einsum("btnh,nhd->btd", attn, p["wo"]).astype(x.dtype)
    x = constrain(x, ACT_AXES)
    h = rms_norm(x, p["mlp_norm"], cfg.rms_norm_eps)
    x = constrain(x + swiglu_mlp(h, p["w_gate"], p["w_up"], p["w_down"]).astype(x.dtype), ACT_AXES)
  h = rms_norm(x[:, 0], model.final_norm.get_value().astype(cfg.dtype), cfg.rms_norm_eps)
  w = model.unembedding().astype(cfg.dtype)
  logits = jnp.einsum("bd,dv->bv", h, w, preferred_element_type=jnp.float32)
  return constrain(logits, ("batch", "vocab")), {"k": new_k, "v": new_v}
