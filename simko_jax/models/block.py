"""The decoder block: one pure function used by training, prefill and one-token decoding.

  x_BxTxD, state = block(cfg, x_BxTxD, p, (cos_BxTxDh, sin_BxTxDh), attend)

`p` is one layer's params in the stored layout (`models.layout`), already in cfg.dtype. `attend(q, k, v)`
is the attention strategy, given q [B, T, H, Dh] and this layer's new keys / values k, v [B, T, K, Dh]
(RoPE applied); it returns (attention output [B, T, H*Dh] in q's dtype, a state the caller keeps):
  * `full_attention(mask_BxTxS, impl)`: attention over the T new tokens (training, prefill); state (k, v).
  * `models.kv_cache.cache_attention(...)`: one new token against a layer's KV cache (decoding); state the
    layer's updated cache blocks.
Training scans `block` over the stacked layers (`Transformer`); prefill and decoding unroll it over
per-layer slices (`models.inference`). Family differences (norm flavour, activation, soft-caps, extra
norms) belong here, behind `ModelConfig` flags, so every path gets them at once:
  * Gemma's (1 + w) RMSNorms (`cfg.norm_offset`), its norms after attention and the MLP
    (`cfg.post_norms`), GeGLU (`cfg.hidden_act`);
  * attention-score scaling and soft-capping (`attention_options`), which every attention strategy takes;
  * per-layer differences (Gemma's sliding-window vs global layers and their RoPE bases) are not here:
    the caller hands each layer its own `cos_sin` and `attend` (`kind_masks`, `rope.rope_by_kind`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from simko_jax.models.attention import attention_mask, attention_scale, gqa_attention
from simko_jax.models.config import ModelConfig
from simko_jax.models.layers import dense, gate_activation, rms_norm
from simko_jax.models.rope import apply_rope
from simko_jax.parallel import constrain

ACT_AXES = ("batch", "length", "embed")
Attend = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, Any]]


def cast_params(cfg: ModelConfig, p: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """One layer's (or all layers') params in the compute dtype cfg.dtype."""
  return jax.tree.map(lambda a: a.astype(cfg.dtype), p)


def qkv(cfg: ModelConfig, p, x_BxTxD, cos_sin) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Pre-norm q [B, T, H, Dh], k and v [B, T, K, Dh] of one layer (one fused matmul), RoPE on q and k."""
  b, t, _ = x_BxTxD.shape
  n_q = cfg.num_heads // cfg.num_kv_heads
  cos, sin = cos_sin
  x = rms_norm(x_BxTxD, p["attn_norm"], cfg.rms_norm_eps, cfg.norm_offset)
  qkv_BxTxKxQ2xDh = dense("btd,dkjh->btkjh", x, p["w_qkv"])
  if cfg.attention_bias:
    qkv_BxTxKxQ2xDh = qkv_BxTxKxQ2xDh + p["b_qkv"]
  q = qkv_BxTxKxQ2xDh[:, :, :, :n_q].reshape(b, t, cfg.num_heads, cfg.head_dim)  # head h: kv head h // Q
  k, v = qkv_BxTxKxQ2xDh[:, :, :, n_q], qkv_BxTxKxQ2xDh[:, :, :, n_q + 1]
  if cfg.qk_norm:
    q = rms_norm(q, p["q_norm"], cfg.rms_norm_eps, cfg.norm_offset)
    k = rms_norm(k, p["k_norm"], cfg.rms_norm_eps, cfg.norm_offset)
  q = constrain(apply_rope(q, cos, sin), ("batch", "length", "heads", "head_dim"))
  return q, apply_rope(k, cos, sin), v


def mlp(cfg: ModelConfig, p, x_BxTxD) -> jax.Array:
  """Gated MLP down(act(x @ gate) * (x @ up)) of the pre-normed x, in x's dtype (one fused gate/up
  matmul); act = silu (SwiGLU) or the tanh GELU (Gemma's GeGLU), `cfg.hidden_act`."""
  x = rms_norm(x_BxTxD, p["mlp_norm"], cfg.rms_norm_eps, cfg.norm_offset)
  gate_up_BxTx2xF = dense("btd,dcf->btcf", x, p["w_gate_up"])
  act = gate_activation(cfg.hidden_act)(gate_up_BxTx2xF[:, :, 0]) * gate_up_BxTx2xF[:, :, 1]
  return dense("btf,fd->btd", act, p["w_down"])


def _post_norm(cfg: ModelConfig, p, name: str, y_BxTxD: jax.Array) -> jax.Array:
  """Gemma's norm of a sublayer's output before the residual add (`cfg.post_norms`); else y."""
  return rms_norm(y_BxTxD, p[name], cfg.rms_norm_eps, cfg.norm_offset) if cfg.post_norms else y_BxTxD


def block(cfg: ModelConfig, x_BxTxD: jax.Array, p: dict[str, jax.Array], cos_sin: tuple[jax.Array, jax.Array],
          attend: Attend) -> tuple[jax.Array, Any]:
  """One pre-norm decoder layer: x + attn(norm(x)), then + mlp(norm(x)) (Gemma: each sublayer's output
  normed again before the add). Returns (x [B, T, D] in x's dtype, the state `attend` returned).
  cos_sin: RoPE cos, sin [B, T, Dh] (float32) of the T tokens, this layer's RoPE."""
  q, k, v = qkv(cfg, p, x_BxTxD, cos_sin)
  attn_BxTxHDh, state = attend(q, k, v)
  y = dense("btf,fd->btd", attn_BxTxHDh, p["wo"]).astype(x_BxTxD.dtype)
  x = constrain(x_BxTxD + _post_norm(cfg, p, "post_attn_norm", y), ACT_AXES)
  x = x + _post_norm(cfg, p, "post_mlp_norm", mlp(cfg, p, x).astype(x.dtype))
  return constrain(x, ACT_AXES), state


def attention_options(cfg: ModelConfig) -> dict[str, Any]:
  """The score options every attention strategy takes: scale (`attention.attention_scale`) and softcap."""
  return {"scale": attention_scale(cfg), "softcap": cfg.attn_logit_softcapping}


def full_attention(mask_BxTxS: jax.Array, impl: str = "xla", *, scale: float | None = None,
                   softcap: float | None = None) -> Attend:
  """The attention strategy of the full forward: the T queries attend to the T new keys under
  `mask_BxTxS` (`models.attention.attention_mask`: causal + padding, + the window of a sliding layer).
  scale, softcap: `attention_options(cfg)` (default: 1 / sqrt(Dh), no capping). State: the layer's (k, v)."""

  def attend(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh):
    out = gqa_attention(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, mask_BxTxS, impl, scale=scale, softcap=softcap)
    return out.reshape(*out.shape[:2], -1), (k_BxTxKxDh, v_BxTxKxDh)

  return attend


def kind_masks(cfg: ModelConfig, mask_BxT: jax.Array) -> jax.Array:
  """The full forward's attention masks per layer kind, bool [Lk, B, T, T] (Lk = `cfg.num_layer_kinds()`;
  row k for the layers whose `cfg.layer_kinds()` entry is k: 0 global, 1 sliding window). With the
  per-kind RoPE (`rope.rope_by_kind`), the scan over layers indexes these stacks with a scanned int
  array of the layers' kinds: one compiled block and no branch for interleaved sliding/global layers."""
  t = mask_BxT.shape[1]
  return jnp.stack([attention_mask(t, t, jnp.int32(0), mask_BxT, cfg.sliding_window if kind else None)
                    for kind in range(cfg.num_layer_kinds())])
