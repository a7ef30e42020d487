"""The sampler's per-layer KV cache: its layout, how a new key/value is written, and attention over it.

A layer's cache is two lists of blocks of `key_block(S)` slots each (at most `MAX_KEY_BLOCKS`):
keys transposed [B, K, Dh, blk], values kv-major [B, K, blk, Dh] (`LAYER_CACHE_AXES`); block j holds
slots [j*blk, (j+1)*blk). Why this layout, the block skipping and the float32 storage of a bfloat16
cache: see `models.inference` (every choice was measured on XLA:CPU).

  cache = prompt_cache(k_BxTxKxDh, v_BxTxKxDh, cache_len=S, n=n, cache_dtype=dtype)  # from prefill
  cache = empty_cache(cfg, rows, S, cache_dtype)                                     # no prompt
  attend = cache_attention(k_blocks, v_blocks, mask_BxS, slot, first_slot, dtype,    # a `block` strategy
                           scale=..., softcap=...)                                  # `block.attention_options`

Sliding-window layers (Gemma) keep the full S slots like global ones: their window is in `mask_BxS`
(`attention.attention_mask(..., window)`), so slots older than the window are masked, not freed, and
blocks wholly before the window are still computed. Sliding layers could hold a window-sized ring
buffer instead; that memory optimisation is not implemented.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from simko_jax.models.attention import MASKED_SCORE
from simko_jax.models.layers import soft_cap
from simko_jax.parallel import constrain

LAYER_CACHE_AXES = {"k": ("batch", "kv_heads", "head_dim", "cache_length"),
                    "v": ("batch", "kv_heads", "cache_length", "head_dim")}

# Bounds the per-step block writes and the HLO size for long caches. Measured decode steps (SmolLM2,
# B=32, 2 CPU cores): S=1024: 16 blocks of 64 150 ms, 4 of 256 198-208 ms, 1 block 200 ms; S=2048: 32
# blocks of 64 234 ms, 16 of 128 246 ms.
MAX_KEY_BLOCKS = 32


def skip_blocks_with_cond() -> bool:
  """Whether `cache_attention` skips the blocks past the current slot with a `lax.cond` (CPU, TPU) or
  computes and masks them (GPU: there each cond is a device-to-host copy and a host sync; see
  `models.inference`)."""
  return jax.default_backend() != "gpu"


def max_key_blocks() -> int:
  """MAX_KEY_BLOCKS where blocks past the current slot are skipped (`skip_blocks_with_cond`: CPU, TPU);
  1 on GPU. Blocks pay off by being skipped and, on XLA:CPU, by their 64-column matmuls. On GPU every
  block is computed and masked, so splitting the cache only adds kernels (per block and layer: a slot
  write, two small matmuls and a softmax piece) to a decode step that is launch-bound (H200, 0.5B
  model, 3 blocks: ~1.15 ms per step against a 0.23 ms bandwidth floor), for the same bytes read."""
  return MAX_KEY_BLOCKS if skip_blocks_with_cond() else 1


def key_block(cache_len: int) -> int:
  """Slots per key (and value) block: cache_len / nb for the largest nb <= min(`max_key_blocks()`,
  cache_len // 64) dividing cache_len (at least 1 block). On CPU: S = 192 -> three blocks of 64;
  S = 4096 -> 32 of 128. On GPU: one block of S."""
  nb = min(max_key_blocks(), max(1, cache_len // 64))
  while cache_len % nb:
    nb -= 1
  return cache_len // nb


def storage_dtype(cache_dtype) -> jnp.dtype:
  """The array dtype that holds a `cache_dtype` cache: float32 for bfloat16 on CPU, else cache_dtype.

  The values stay bfloat16 values (rounded before they are stored; float32 holds them exactly), so
  only memory changes. Why: XLA:CPU widens every bfloat16 data-movement op (dynamic_slice,
  dynamic_update_slice, select) to float32, and on a while-loop carry that turned each one-slot write
  into a convert, write and convert back of the whole block (SmolLM2 bf16 profile: ~32 ms of a ~110 ms
  decode step)."""
  cache_dtype = jnp.dtype(cache_dtype)
  return jnp.dtype(jnp.float32) if cache_dtype == jnp.bfloat16 and jax.default_backend() == "cpu" else cache_dtype


def prompt_cache(k_BxTxKxDh: jax.Array, v_BxTxKxDh: jax.Array, *, cache_len: int, n: int,
                 cache_dtype) -> tuple[list[jax.Array], list[jax.Array]]:
  """One layer's cache of B*n rows (row b*n + j = copy j of prompt b) holding the T prompt keys/values
  at slots [0, T) and zeros at [T, S): (key blocks, value blocks), rounded to `cache_dtype`."""
  t = k_BxTxKxDh.shape[1]
  blk = key_block(cache_len)
  k, v = (x.astype(cache_dtype).astype(storage_dtype(cache_dtype)) for x in (k_BxTxKxDh, v_BxTxKxDh))
  k = jnp.repeat(k, n, axis=0) if n > 1 else k
  v = jnp.repeat(v, n, axis=0) if n > 1 else v
  k_BxKxDhxS = jnp.pad(jnp.transpose(k, (0, 2, 3, 1)), ((0, 0),) * 3 + ((0, cache_len - t),))
  v_BxKxSxDh = jnp.pad(jnp.swapaxes(v, 1, 2), ((0, 0), (0, 0), (0, cache_len - t), (0, 0)))
  ks = [constrain(k_BxKxDhxS[..., j:j + blk], LAYER_CACHE_AXES["k"]) for j in range(0, cache_len, blk)]
  vs = [constrain(v_BxKxSxDh[:, :, j:j + blk], LAYER_CACHE_AXES["v"]) for j in range(0, cache_len, blk)]
  return ks, vs


def empty_cache(cfg, rows: int, cache_len: int, cache_dtype=None) -> dict[str, list[list[jax.Array]]]:
  """A zeroed cache {"k": L lists of key blocks, "v": L lists of value blocks} (prompts of length 1,
  where there is nothing to prefill)."""
  dtype = storage_dtype(cfg.dtype if cache_dtype is None else cache_dtype)
  k, dh, blk = cfg.num_kv_heads, cfg.head_dim, key_block(cache_len)
  nb = cache_len // blk
  return {"k": [[jnp.zeros((rows, k, dh, blk), dtype) for _ in range(nb)] for _ in range(cfg.num_layers)],
          "v": [[jnp.zeros((rows, k, blk, dh), dtype) for _ in range(nb)] for _ in range(cfg.num_layers)]}


def write_slot(blocks: list[jax.Array], new: jax.Array, slot: jax.Array, axis: int, kind: str,
               value_dtype, first_slot: int = 0) -> list[jax.Array]:
  """Write `new` (size 1 along the blocks' slot `axis`) at cache `slot` into the one block holding it,
  in place: every block that can hold `slot` gets a one-slot `dynamic_update_slice`, of `new` in the
  right block and of its own old slot elsewhere (no block is copied). Blocks ending before `first_slot`
  (static lower bound on `slot`; the prompt's blocks) are returned untouched. kind: "k" or "v", for
  `LAYER_CACHE_AXES`. value_dtype: the cache dtype `new` is rounded to (its storage: `storage_dtype`)."""
  blk = blocks[0].shape[axis]
  new = new.astype(value_dtype).astype(blocks[0].dtype)
  zero = jnp.int32(0)
  out = []
  for j, block in enumerate(blocks):
    if (j + 1) * blk <= first_slot:  # every slot of this block is before the first written one
      out.append(block)
      continue
    at = [zero] * block.ndim
    at[axis] = jnp.clip(slot - j * blk, 0, blk - 1)
    value = jnp.where(slot // blk == j, new, jax.lax.dynamic_slice(block, at, new.shape))
    out.append(constrain(jax.lax.dynamic_update_slice(block, value, at), LAYER_CACHE_AXES[kind]))
  return out


def cache_attention(k_blocks: list[jax.Array], v_blocks: list[jax.Array], mask_BxS: jax.Array,
                    slot: jax.Array, first_slot: int, value_dtype, *, scale: float | None = None,
                    softcap: float | None = None):
  """The attention strategy of one-token decoding on one layer's cache (see `models.block`): writes the
  new key/value at `slot` (`write_slot`), then attends the query to slots s <= slot with mask_BxS 1.
  State: the updated (key blocks, value blocks). `first_slot`: static lower bound on `slot`.
  scale, softcap: the score options of `block.attention_options`."""

  def attend(q_Bx1xHxDh, k_Bx1xKxDh, v_Bx1xKxDh):
    # The new key [B, 1, K, Dh] -> [B, K, Dh, 1] and value -> [B, K, 1, Dh], written at the slot.
    ks = write_slot(k_blocks, jnp.transpose(k_Bx1xKxDh, (0, 2, 3, 1)), slot, 3, "k", value_dtype, first_slot)
    vs = write_slot(v_blocks, jnp.swapaxes(v_Bx1xKxDh, 1, 2), slot, 2, "v", value_dtype, first_slot)
    out_BxHDh = attend_blocks(q_Bx1xHxDh[:, 0], ks, vs, mask_BxS, slot, first_slot, value_dtype,
                              scale=scale, softcap=softcap)
    return out_BxHDh[:, None], (ks, vs)

  return attend


def attend_blocks(q_BxHxDh, k_blocks, v_blocks, mask_BxS, slot, first_slot: int, value_dtype, *,
                  scale: float | None = None, softcap: float | None = None) -> jax.Array:
  """`models.attention.gqa_attention` (impl "xla") for one query per row on the layer cache: float32
  scores and softmax, head h uses kv head h // Q, the same `scale` (default 1 / sqrt(Dh)) and score
  `softcap`. Returns [B, H*Dh] in q's dtype.
  value_dtype: the cache dtype (the probabilities are rounded to it before the value matmul, as the
  model rounds them to its values' dtype).

  Each block j (slots [j*blk, (j+1)*blk)) yields its own score max m_j, exp-sum l_j and unnormalised
  output o_j = exp(s_j - m_j) @ v_j, combined as sum_j e^(m_j - M) o_j / sum_j e^(m_j - M) l_j with
  M = max_j m_j (the same softmax, regrouped). A block that starts after `slot` holds no visible key:
  one `lax.cond` skips both of its matmuls (m_j = the masked value, l_j = 0, o_j = 0) where
  `skip_blocks_with_cond()`; elsewhere it is computed fully masked, so m_j = the masked value and
  e^(m_j - M) = 0 drops it. Blocks starting at or before `first_slot` (static) are always computed. A
  visible block whose keys are all masked (left padding) has m_j = the masked value, so e^(m_j - M) = 0
  drops it: every row sees at least one real key (its prompt), so M is a real score."""
  b, h, dh = q_BxHxDh.shape
  k, blk = k_blocks[0].shape[1], k_blocks[0].shape[-1]
  n_q = h // k
  q_BxKxQxDh = q_BxHxDh.reshape(b, k, n_q, dh)
  scale = 1.0 / float(dh) ** 0.5 if scale is None else scale

  def block(k_BxKxDhxblk, v_BxKxblkxDh, visible_Bxblk):
    qk = jnp.promote_types(q_BxKxQxDh.dtype, k_BxKxDhxblk.dtype)  # float32 keys of a bf16 cache: no cast
    s = jnp.einsum("bkqd,bkds->bkqs", q_BxKxQxDh.astype(qk), k_BxKxDhxblk.astype(qk),
                   preferred_element_type=jnp.float32)
    s = jnp.where(visible_Bxblk[:, None, None, :], soft_cap(s * scale, softcap), MASKED_SCORE)
    m = jnp.max(s, axis=-1)
    e = jnp.exp(s - m[..., None])
    o = jnp.einsum("bkqs,bksd->bkqd", e.astype(value_dtype), v_BxKxblkxDh, preferred_element_type=jnp.float32)
    return m, jnp.sum(e, axis=-1), o

  def nothing(k_BxKxDhxblk, v_BxKxblkxDh, visible_Bxblk):
    return (jnp.full((b, k, n_q), MASKED_SCORE, jnp.float32), jnp.zeros((b, k, n_q), jnp.float32),
            jnp.zeros((b, k, n_q, dh), jnp.float32))

  parts = []
  skip = skip_blocks_with_cond()
  for j, (kb, vb) in enumerate(zip(k_blocks, v_blocks)):
    visible = mask_BxS[:, j * blk:(j + 1) * blk]
    parts.append(jax.lax.cond(slot >= j * blk, block, nothing, kb, vb, visible) if skip and j * blk > first_slot
                 else block(kb, vb, visible))
  m_max = functools.reduce(jnp.maximum, [m for m, _, _ in parts])
  weights = [jnp.exp(m - m_max) for m, _, _ in parts]
  denom = sum(w * l for w, (_, l, _) in zip(weights, parts))
  out = sum(w[..., None] * o for w, (_, _, o) in zip(weights, parts)) / denom[..., None]
  return out.reshape(b, h * dh).astype(q_BxHxDh.dtype)
