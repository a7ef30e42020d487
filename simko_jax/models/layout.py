"""The decoder layer's stored params (fused, in the layout the sampler runs) and their source tensors.

Stored per layer (the model stacks each over a leading L axis; `layer_param_specs`):
  attn_norm  [D]                 ("norm",)
  w_qkv      [D, K, Q+2, Dh]     ("embed", "kv_heads", None, "head_dim")  per kv head: its Q query heads,
                                 then its key head, then its value head (query head h belongs to kv head
                                 h // Q), so a "kv_heads" sharding splits whole groups
  b_qkv      [K, Q+2, Dh]        ("kv_heads", None, "head_dim")            when cfg.attention_bias
  q_norm     [Dh], k_norm [Dh]   ("norm",)                                 when cfg.qk_norm
  wo         [H*Dh, D]           ("heads", "embed")    flat: the attention output [.., H*Dh] is one matmul
  mlp_norm   [D]                 ("norm",)
  w_gate_up  [D, 2, F]           ("embed", None, "mlp")  [:, 0] gate, [:, 1] up
  w_down     [F, D]              ("mlp", "embed")
  post_attn_norm, post_mlp_norm [D]  ("norm",)        when cfg.post_norms (Gemma: norms of the attention
                                 and MLP outputs; Gemma's mlp_norm is its pre_feedforward_layernorm)
Norm weights start at 1, or at 0 when cfg.norm_offset is 1 (Gemma's (1 + w) norms): a scale of 1 either way.

Checkpoint formats (HF, GGUF, checkpoints saved before the fusion) keep q, k, v, gate and up apart. Their
tensors are named by *source* names (`source_shapes`): wq [D, H*Dh], wk / wv [D, K*Dh], bq [H*Dh],
bk / bv [K*Dh], w_gate / w_up [D, F], and every unfused stored param under its own name; matrices are
[in, out]. `fuse` builds a stored param from its sources (at import), `unfuse` splits it (at export).
A new model family adds its params here once; importers only map source names to file tensors.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from simko_jax.models.config import ModelConfig
from simko_jax.models.layers import normal_init, ones_init, zeros_init

# stored param -> the source tensors it is fused from (in this order)
FUSED_SOURCES: dict[str, tuple[str, ...]] = {
    "w_qkv": ("wq", "wk", "wv"),
    "b_qkv": ("bq", "bk", "bv"),
    "w_gate_up": ("w_gate", "w_up"),
}

Spec = tuple[tuple[int, ...], tuple[str | None, ...], Callable[..., jax.Array]]


def layer_param_specs(cfg: ModelConfig) -> dict[str, Spec]:
  """Stored per-layer params: name -> (shape without L, logical axes without "layers", init)."""
  d, f, dh = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
  h, k = cfg.num_heads, cfg.num_kv_heads
  q = h // k
  w = normal_init(0.02)
  norm = zeros_init if cfg.norm_offset else ones_init
  specs: dict[str, Spec] = {"attn_norm": ((d,), ("norm",), norm),
                            "w_qkv": ((d, k, q + 2, dh), ("embed", "kv_heads", None, "head_dim"), w)}
  if cfg.attention_bias:
    specs["b_qkv"] = ((k, q + 2, dh), ("kv_heads", None, "head_dim"), zeros_init)
  if cfg.qk_norm:
    specs.update(q_norm=((dh,), ("norm",), norm), k_norm=((dh,), ("norm",), norm))
  specs.update(wo=((h * dh, d), ("heads", "embed"), w),
               mlp_norm=((d,), ("norm",), norm),
               w_gate_up=((d, 2, f), ("embed", None, "mlp"), w),
               w_down=((f, d), ("mlp", "embed"), w))
  if cfg.post_norms:
    specs.update(post_attn_norm=((d,), ("norm",), norm), post_mlp_norm=((d,), ("norm",), norm))
  return specs


def source_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """Every source tensor of one layer: name -> shape ([in, out] for matrices), see the module doc."""
  d, f, dh = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
  h, k = cfg.num_heads, cfg.num_kv_heads
  parts = {"wq": (d, h * dh), "wk": (d, k * dh), "wv": (d, k * dh), "bq": (h * dh,), "bk": (k * dh,),
           "bv": (k * dh,), "w_gate": (d, f), "w_up": (d, f)}
  out = {}
  for name, (shape, _, _) in layer_param_specs(cfg).items():
    for src in FUSED_SOURCES.get(name, (name,)):
      out[src] = parts.get(src, shape)
  return out


def _xp(arr):
  return jnp if isinstance(arr, jax.Array) else np


def fuse(cfg: ModelConfig, name: str, sources: Mapping[str, Any]) -> Any:
  """Stored param `name` of one layer from its source tensors (numpy in, numpy out; jax in, jax out).
  Extra leading axes (e.g. L) are kept."""
  if name not in FUSED_SOURCES:
    return sources[name]
  parts = [sources[s] for s in FUSED_SOURCES[name]]
  xp = _xp(parts[0])
  k, q, dh = cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads, cfg.head_dim
  if name == "w_gate_up":
    return xp.stack(parts, axis=-2)
  lead = parts[0].shape[:-1]  # [..., D] for weights, [...] for biases
  grouped = [p.reshape(*lead, k, -1, dh) for p in parts]  # q: [.., K, Q, Dh]; k, v: [.., K, 1, Dh]
  assert grouped[0].shape[-2] == q, (name, grouped[0].shape)
  return xp.concatenate(grouped, axis=-2)


def unfuse(cfg: ModelConfig, name: str, arr: Any) -> dict[str, Any]:
  """Inverse of `fuse`: {source name: tensor} of stored param `name` (extra leading axes kept)."""
  if name not in FUSED_SOURCES:
    return {name: arr}
  if name == "w_gate_up":
    return dict(zip(FUSED_SOURCES[name], (arr[..., 0, :], arr[..., 1, :])))
  q = cfg.num_heads // cfg.num_kv_heads
  lead = arr.shape[:-3]
  pieces = (arr[..., :q, :], arr[..., q:q + 1, :], arr[..., q + 1:, :])
  return {src: p.reshape(*lead, -1) for src, p in zip(FUSED_SOURCES[name], pieces)}
