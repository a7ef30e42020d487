"""The decoder-only transformer (Llama / Qwen2 / Qwen3 / Gemma 2 / Gemma 3 text) in Flax NNX.

Params (every one an `nnx.Param` with `logical_axes` metadata, see `simko_jax.parallel.rules`):
  embed        [V, D]            ("vocab", "embed")
  layers.<n>   [L, ...]          the stored layer params of `models.layout` (fused q/k/v and gate/up, flat
                                 output projection) stacked over a leading "layers" axis, run with
                                 `jax.lax.scan` so compile time does not grow with depth
  final_norm   [D]               ("norm",)
  lm_head      [D, V]            ("embed", "vocab")   only when `tie_word_embeddings` is False

Public API:
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  logits_BxTxV = model(tokens_BxT, positions_BxT=None, attention_mask_BxT=None)       # float32
  h_BxTxD = model.hidden_states(tokens_BxT, positions_BxT=None, attention_mask_BxT=None)  # cfg.dtype
  W_DxV = model.unembedding()             # model(...) == soft_cap(h @ W (fp32), cfg.final_logit_softcapping)
The layer itself is `models.block.block`; KV-cache prefill and decoding: `models.inference`.

Layers of different kinds (Gemma's sliding-window and global layers, with their own RoPE bases) run in
the same scan: the layers' kinds (`cfg.layer_kinds()`) are a scanned int32 array indexing per-kind
stacks of masks and RoPE cos/sin (`block.kind_masks`, `rope.rope_by_kind`), built once per forward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from simko_jax.models.block import ACT_AXES, attention_options, block, cast_params, full_attention, kind_masks
from simko_jax.models.config import ModelConfig
from simko_jax.models.layers import (make_param, maybe_remat, normal_init, ones_init, rms_norm, soft_cap,
                                     zeros_init)
from simko_jax.models.layout import layer_param_specs
from simko_jax.models.rope import rope_by_kind
from simko_jax.parallel import constrain


class Layers(nnx.Module):
  """All decoder layers' params stacked on a leading axis of size num_layers."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    for name, (shape, axes, init) in layer_param_specs(cfg).items():
      setattr(self, name, make_param(rngs, init, (cfg.num_layers, *shape), ("layers", *axes),
                                     cfg.param_dtype))

  def stacked(self, cfg: ModelConfig) -> dict[str, jax.Array]:
    """{name: [L, ...] param} in param dtype."""
    return {name: getattr(self, name).get_value() for name in layer_param_specs(cfg)}


def embed_tokens(cfg: ModelConfig, embed_VxD: jax.Array, tokens_BxT: jax.Array) -> jax.Array:
  """The token embeddings [B, T, D] in cfg.dtype (Gemma: times sqrt(D) rounded to cfg.dtype, as HF)."""
  x = constrain(embed_VxD[tokens_BxT], ("lookup_batch", "length", "embed")).astype(cfg.dtype)
  if cfg.scale_embeddings:
    x = x * jnp.asarray(cfg.hidden_size ** 0.5, cfg.dtype)
  return constrain(x, ACT_AXES)


def final_norm(cfg: ModelConfig, x_BxTxD: jax.Array, weight_D: jax.Array) -> jax.Array:
  """The final RMSNorm of the last layer's output (in cfg.dtype)."""
  return rms_norm(x_BxTxD, weight_D.astype(cfg.dtype), cfg.rms_norm_eps, cfg.norm_offset)


def lm_logits(h_BxTxD: jax.Array, w_DxV: jax.Array, softcap: float | None = None) -> jax.Array:
  """Float32 logits [B, T, V] of the final-norm output h and the LM-head matrix W (both cfg.dtype),
  soft-capped by `softcap` (cfg.final_logit_softcapping; None: off)."""
  logits = jnp.einsum("btd,dv->btv", h_BxTxD, w_DxV, preferred_element_type=jnp.float32)
  return constrain(soft_cap(logits, softcap), ("batch", "length", "vocab"))


class Transformer(nnx.Module):
  """Decoder-only LM. See the module docstring for params and the public API."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d, v = cfg.hidden_size, cfg.vocab_size
    self.embed = make_param(rngs, normal_init(0.02), (v, d), ("vocab", "embed"), cfg.param_dtype)
    self.layers = Layers(cfg, rngs)
    self.final_norm = make_param(rngs, zeros_init if cfg.norm_offset else ones_init, (d,), ("norm",),
                                 cfg.param_dtype)
    if not cfg.tie_word_embeddings:
      self.lm_head = make_param(rngs, normal_init(0.02), (d, v), ("embed", "vocab"), cfg.param_dtype)

  def unembedding(self) -> jax.Array:
    """The LM-head matrix W [D, V] (the transposed embedding when tied), in param dtype."""
    if self.cfg.tie_word_embeddings:
      return self.embed.get_value().T
    return self.lm_head.get_value()

  def hidden_states(self, tokens_BxT: jax.Array, positions_BxT: jax.Array | None = None,
                    attention_mask_BxT: jax.Array | None = None) -> jax.Array:
    """Final-norm output h [B, T, D] in cfg.dtype (causal + padding mask; see `__call__`)."""
    cfg = self.cfg
    b, t = tokens_BxT.shape
    if attention_mask_BxT is None:
      attention_mask_BxT = jnp.ones((b, t), jnp.int32)
    if positions_BxT is None:
      positions_BxT = jnp.maximum(jnp.cumsum(attention_mask_BxT.astype(jnp.int32), axis=-1) - 1, 0)
    masks_LkxBxTxT = kind_masks(cfg, attention_mask_BxT)
    cos_LkxBxTxDh, sin_LkxBxTxDh = rope_by_kind(cfg, positions_BxT)
    options = attention_options(cfg)

    def body(x_BxTxD, p_and_kind):
      p, kind = p_and_kind  # kind: this layer's row of the per-kind stacks (a traced int32 scalar)
      attend = full_attention(masks_LkxBxTxT[kind], cfg.attention_impl, **options)
      cos_sin = (cos_LkxBxTxDh[kind], sin_LkxBxTxDh[kind])
      x_BxTxD, _ = block(cfg, x_BxTxD, cast_params(cfg, p), cos_sin, attend)  # k, v unused: not kept
      return x_BxTxD, None

    x = embed_tokens(cfg, self.embed.get_value(), tokens_BxT)
    kinds_L = jnp.asarray(cfg.layer_kinds(), jnp.int32)
    x, _ = jax.lax.scan(maybe_remat(body, cfg.remat), x, (self.layers.stacked(cfg), kinds_L))
    return final_norm(cfg, x, self.final_norm.get_value())

  def __call__(self, tokens_BxT: jax.Array, positions_BxT: jax.Array | None = None,
               attention_mask_BxT: jax.Array | None = None) -> jax.Array:
    """Float32 logits [B, T, V].

    `attention_mask_BxT` is 1 for real tokens, 0 for padding (left-padded batches; default all ones).
    `positions_BxT` defaults to cumsum(mask) - 1 clipped at 0. Attention is causal and ignores padding
    keys; logits at padding positions are meaningless. Equals `hidden_states(...) @ unembedding()`,
    soft-capped by cfg.final_logit_softcapping (Gemma 2).
    """
    h = self.hidden_states(tokens_BxT, positions_BxT, attention_mask_BxT)
    return lm_logits(h, self.unembedding().astype(self.cfg.dtype), self.cfg.final_logit_softcapping)
