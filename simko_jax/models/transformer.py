"""The decoder-only transformer (Llama / Qwen2 / Qwen3 family) in Flax NNX.

Params (every one an `nnx.Param` with `logical_axes` metadata, see `simko_jax.parallel.rules`):
  embed        [V, D]            ("vocab", "embed")
  layers.<n>   [L, ...]          stacked over a leading "layers" axis (see `layer_param_specs`), run with
                                 `jax.lax.scan` so compile time does not grow with depth
  final_norm   [D]               ("norm",)
  lm_head      [D, V]            ("embed", "vocab")   only when `tie_word_embeddings` is False

Public API:
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  logits_BxTxV = model(tokens_BxT, positions_BxT=None, attention_mask_BxT=None)       # float32
  h_BxTxD = model.hidden_states(tokens_BxT, positions_BxT=None, attention_mask_BxT=None)  # cfg.dtype
  W_DxV = model.unembedding()             # model(...) == h @ W (fp32)
  cache = model.init_cache(batch, max_len, dtype=None)
  logits_BxTxV, cache = model.decode(tokens_BxT, positions_BxT, cache, cache_index, kv_mask_BxS)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from simko_jax.models.attention import attention_mask, gqa_attention
from simko_jax.models.config import ModelConfig
from simko_jax.models.layers import (dense, make_param, maybe_remat, normal_init, ones_init, rms_norm,
                                     swiglu_mlp, zeros_init)
from simko_jax.models.rope import apply_rope, inv_frequencies, rope_cos_sin
from simko_jax.parallel import constrain

CACHE_LOGICAL_AXES = ("layers", "batch", "cache_length", "kv_heads", "head_dim")
ACT_AXES = ("batch", "length", "embed")


def layer_param_specs(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], tuple[str, ...], Any]]:
  """Per-layer params: name -> (shape without the layer axis, logical axes without "layers", init)."""
  d, n, k, h, f = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size
  w = normal_init(0.02)
  specs = {
      "attn_norm": ((d,), ("norm",), ones_init),
      "wq": ((d, n, h), ("embed", "heads", "head_dim"), w),
      "wk": ((d, k, h), ("embed", "kv_heads", "head_dim"), w),
      "wv": ((d, k, h), ("embed", "kv_heads", "head_dim"), w),
      "wo": ((n, h, d), ("heads", "head_dim", "embed"), w),
      "mlp_norm": ((d,), ("norm",), ones_init),
      "w_gate": ((d, f), ("embed", "mlp"), w),
      "w_up": ((d, f), ("embed", "mlp"), w),
      "w_down": ((f, d), ("mlp", "embed"), w),
  }
  if cfg.attention_bias:
    specs.update(bq=((n, h), ("heads", "head_dim"), zeros_init),
                 bk=((k, h), ("kv_heads", "head_dim"), zeros_init),
                 bv=((k, h), ("kv_heads", "head_dim"), zeros_init))
  if cfg.qk_norm:
    specs.update(q_norm=((h,), ("norm",), ones_init), k_norm=((h,), ("norm",), ones_init))
  return specs


class Layers(nnx.Module):
  """All decoder layers' params stacked on a leading axis of size num_layers."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    for name, (shape, axes, init) in layer_param_specs(cfg).items():
      setattr(self, name, make_param(rngs, init, (cfg.num_layers, *shape), ("layers", *axes),
                                     cfg.param_dtype))

  def stacked(self, cfg: ModelConfig) -> dict[str, jax.Array]:
    return {name: getattr(self, name).get_value() for name in layer_param_specs(cfg)}


def _block(cfg: ModelConfig, x_BxTxD, p, cos, sin, mask_BxTxS, kv, cache_index):
  """One pre-norm decoder layer. `kv` is None (full forward) or this layer's (k, v) cache [B,S,K,H]."""
  p = jax.tree.map(lambda a: a.astype(cfg.dtype), p)
  h = rms_norm(x_BxTxD, p["attn_norm"], cfg.rms_norm_eps)
  q = dense("btd,dnh->btnh", h, p["wq"])
  k = dense("btd,dkh->btkh", h, p["wk"])
  v = dense("btd,dkh->btkh", h, p["wv"])
  if cfg.attention_bias:
    q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
  if cfg.qk_norm:
    q = rms_norm(q, p["q_norm"], cfg.rms_norm_eps)
    k = rms_norm(k, p["k_norm"], cfg.rms_norm_eps)
  q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
  q = constrain(q, ("batch", "length", "heads", "head_dim"))
  if kv is None:
    keys, values, new_kv = k, v, None
  else:
    k_cache, v_cache = kv
    start = (0, cache_index, 0, 0)
    keys = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), start)
    values = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), start)
    new_kv = (keys, values)
  attn = gqa_attention(q, keys, values, mask_BxTxS, cfg.attention_impl)
  x = x_BxTxD + dense("btnh,nhd->btd", attn, p["wo"]).astype(x_BxTxD.dtype)
  x = constrain(x, ACT_AXES)
  h = rms_norm(x, p["mlp_norm"], cfg.rms_norm_eps)
  x = x + swiglu_mlp(h, p["w_gate"], p["w_up"], p["w_down"]).astype(x.dtype)
  return constrain(x, ACT_AXES), new_kv


class Transformer(nnx.Module):
  """Decoder-only LM. See the module docstring for params and the public API."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d, v = cfg.hidden_size, cfg.vocab_size
    self.embed = make_param(rngs, normal_init(0.02), (v, d), ("vocab", "embed"), cfg.param_dtype)
    self.layers = Layers(cfg, rngs)
    self.final_norm = make_param(rngs, ones_init, (d,), ("norm",), cfg.param_dtype)
    if not cfg.tie_word_embeddings:
      self.lm_head = make_param(rngs, normal_init(0.02), (d, v), ("embed", "vocab"), cfg.param_dtype)

  # ------------------------------------------------------------------ helpers
  def unembedding(self) -> jax.Array:
    """The LM-head matrix W [D, V] (the transposed embedding when tied), in param dtype."""
    if self.cfg.tie_word_embeddings:
      return self.embed.get_value().T
    return self.lm_head.get_value()

  def _run_layers(self, tokens_BxT, positions_BxT, mask_BxTxS, cache, cache_index):
    cfg = self.cfg
    x = constrain(self.embed.get_value()[tokens_BxT], ("lookup_batch", "length", "embed"))
    x = constrain(x.astype(cfg.dtype), ACT_AXES)
    cos, sin = rope_cos_sin(positions_BxT, inv_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling))

    def body(x, xs):
      p, kv = xs
      return _block(cfg, x, p, cos, sin, mask_BxTxS, kv, cache_index)

    body = maybe_remat(body, cfg.remat)
    kv_xs = None if cache is None else (cache["k"], cache["v"])
    x, new_kv = jax.lax.scan(body, x, (self.layers.stacked(cfg), kv_xs))
    h = rms_norm(x, self.final_norm.get_value().astype(cfg.dtype), cfg.rms_norm_eps)
    new_cache = None if cache is None else {"k": new_kv[0], "v": new_kv[1]}
    return h, new_cache

  def _logits(self, h_BxTxD) -> jax.Array:
    w = self.unembedding().astype(self.cfg.dtype)
    logits = jnp.einsum("btd,dv->btv", h_BxTxD, w, preferred_element_type=jnp.float32)
    return constrain(logits, ("batch", "length", "vocab"))

  # ------------------------------------------------------------------ full forward
  def hidden_states(self, tokens_BxT: jax.Array, positions_BxT: jax.Array | None = None,
                    attention_mask_BxT: jax.Array | None = None) -> jax.Array:
    """Final-norm output h [B, T, D] in cfg.dtype (causal + padding mask; see `__call__`)."""
    b, t = tokens_BxT.shape
    if attention_mask_BxT is None:
      attention_mask_BxT = jnp.ones((b, t), jnp.int32)
    if positions_BxT is None:
      positions_BxT = jnp.maximum(jnp.cumsum(attention_mask_BxT.astype(jnp.int32), axis=-1) - 1, 0)
    mask = attention_mask(t, t, jnp.int32(0), attention_mask_BxT)
    h, _ = self._run_layers(tokens_BxT, positions_BxT, mask, None, 0)
    return h

  def __call__(self, tokens_BxT: jax.Array, positions_BxT: jax.Array | None = None,
               attention_mask_BxT: jax.Array | None = None) -> jax.Array:
    """Float32 logits [B, T, V].

    `attention_mask_BxT` is 1 for real tokens, 0 for padding (left-padded batches; default all ones).
    `positions_BxT` defaults to cumsum(mask) - 1 clipped at 0. Attention is causal and ignores padding
    keys; logits at padding positions are meaningless. Equals `hidden_states(...) @ unembedding()`.
    """
    return self._logits(self.hidden_states(tokens_BxT, positions_BxT, attention_mask_BxT))

  # ------------------------------------------------------------------ KV-cache decoding
  def init_cache(self, batch: int, max_len: int, dtype: Any = None) -> dict[str, jax.Array]:
    """Zeroed KV cache {"k", "v"}: [num_layers, batch, max_len, num_kv_heads, head_dim] (dtype default
    cfg.dtype). Logical axes of both arrays: `CACHE_LOGICAL_AXES` (shard with `cache_shardings`)."""
    cfg = self.cfg
    shape = (cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
    dtype = cfg.dtype if dtype is None else dtype
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}

  def decode(self, tokens_BxT: jax.Array, positions_BxT: jax.Array, cache: dict[str, jax.Array],
             cache_index: jax.Array, kv_mask_BxS: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Run T new tokens against the KV cache; returns (float32 logits [B, T, V], updated cache).

    Writes the T new keys/values at cache slots [cache_index, cache_index + T) (`cache_index` may be a
    traced int32 scalar, so one compiled function serves every step; shapes are static). Query t (at
    slot cache_index + t) attends to slots s <= cache_index + t with kv_mask_BxS[b, s] == 1.
    `kv_mask_BxS` [B, S=max_len] marks valid (non-padding) slots and is maintained by the caller: it
    must already be 1 at the new slots of real tokens. `positions_BxT` are the RoPE positions of the
    new tokens (for left-padded prompts: cumsum(mask) - 1). Prefill = decode with T = prompt length at
    cache_index 0; one sampling step = T = 1. The returned cache has the input's shapes/dtypes, so the
    input cache can be donated (`jax.jit(..., donate_argnums=...)`).
    """
    b, t = tokens_BxT.shape
    s = cache["k"].shape[2]
    cache_index = jnp.asarray(cache_index, jnp.int32)
    mask = attention_mask(t, s, cache_index, kv_mask_BxS)
    h, new_cache = self._run_layers(tokens_BxT, positions_BxT, mask, cache, cache_index)
    return self._logits(h), new_cache


def cache_shardings(cache: dict[str, jax.Array], mesh, rules=None) -> dict[str, Any]:
  """NamedShardings for a cache from `init_cache` under `mesh` and logical-axis `rules`."""
  from simko_jax.parallel import logical_to_sharding
  return {k: logical_to_sharding(CACHE_LOGICAL_AXES, mesh, rules, v.shape) for k, v in cache.items()}
