"""Prefill and one-token decode over a per-layer KV cache updated in place (the sampler's hot loop).

  layer_params = split_layer_params(model)        # once per sampling call, outside the loop
  rope = rope_table(model.cfg, S)                 # likewise
  cache = prefill(model, layer_params, prompt_BxT, positions_BxT, mask_BxT, rope, cache_len=S, n=n)
  logits_BxV, cache = decode_step(model, layer_params, token_B, position_B, cache, slot, kv_mask_BxS, rope)

Same math as the model's `Transformer.__call__` / `decode` (tests check tokens and log-probs against
the full forward), laid out for speed. Each choice was measured on SmolLM2-135M, B=32, S=192, float32,
2 CPU cores (`benchmarks/sampling.py`; decode-step times from a 32-step loop):
  * the layers are unrolled with per-layer weights sliced once outside the loop: inside a scan, XLA:CPU
    copies every layer's weights (dynamic-slice, 0.42 GB per step) and cache before its dots, and a
    scan over a stacked cache copies the whole cache every step. Each layer's cache blocks are
    while-loop carries written by one-slot `dynamic_update_slice`s at the new slot (in place). Cost: one copy
    of the layer weights in cfg.dtype while sampling; compile time grows with depth.
  * cache layout per layer: keys transposed and values kv-major, both split into `key_block(S)`-slot
    blocks (64 slots, at most `MAX_KEY_BLOCKS`): keys [B, KVH, Dh, blk], values [B, KVH, blk, Dh]. Both
    attention contractions are then plain [G, Dh] x [Dh, blk] and [G, blk] x [blk, Dh] matmuls per
    (row, kv head). Scores over 30 layers: the model's [B, S, KVH, Dh] made XLA:CPU transpose the cache
    every step (attention 130 ms/step); kv-major [B, KVH, S, Dh] keys 20 ms/step, transposed
    [B, KVH, Dh, S] keys 13-14 ms, 64-slot key blocks 6.6 ms (XLA:CPU's batched matmul is far faster
    with 64 output columns than with 192). A new key/value is written into its block by `_write_slot`
    without copying any block.
  * blocks that start after the current slot hold no visible key yet: their score and value matmuls
    sit behind a `lax.cond` and are skipped, so attention costs what the sequence so far needs, not
    the whole preallocated cache (S = 1024, steps 64..1023, 30 layers: attention 64-67 -> 46 ms/step).
    Not on GPU (`skip_blocks_with_cond`): XLA:GPU's conditional thunk copies the predicate to the host
    and blocks until the stream is done, a host sync per skippable block, layer and step in a decode
    step that is launch-bound already (H200, 0.5B model: ~1.15 ms per step); there the cache is one
    block (`max_key_blocks`), computed and masked whole, which is the same softmax.
  * softmax per block, merged at the end (max, exp-sum and unnormalised output per block, like flash
    attention), with one `lax.cond` per block around both matmuls, is faster on XLA:CPU than one
    softmax over the concatenated blocks with a cond per matmul (`benchmarks/ab_sampling.sh` 883f0b5
    vs this change, 128 new tokens: +12, +11, +5 %; 448 new tokens: -1, +3 %).
  * fused weights: q/k/v are one [D, KVH, G+2, Dh] matmul (per kv head: its G query heads, then its
    key and value head, so a "kv_heads" sharding splits whole groups) and gate/up one [D, 2, F] matmul;
    the output projection is a flat [N*Dh, D] matrix, which stops XLA:CPU from transposing the
    [N, Dh, D] weight on every step to match the attention output's layout (5 ms/step).
  * RoPE's cos/sin come from a [S, Dh] table built once per call, gathered by position: computed inside
    the step, XLA fused them into every layer's RoPE and evaluated sin/cos per head and layer (2.9 ms
    per step in an XLA profile; 0.3 ms with the table).
  * prefill runs the same unrolled layers over the prompt and writes each layer's keys/values into its
    cache directly (no [L, B, S, KVH, Dh] cache, no second per-call copy of the weights).
  * bfloat16 on XLA:CPU (`--dtype bfloat16` of the benchmark: 250 -> 453 tok/s): dots accumulate in
    float32 explicitly (`models.layers.dense`), the cache is stored as float32 (`storage_dtype`; the
    values stay bf16-rounded) and the tied LM head is a [D, V] copy made once per call
    (`lm_head_weight`). Elsewhere (GPU, TPU) only the LM-head copy applies.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from simko_jax.models.attention import attention_mask, gqa_attention
from simko_jax.models.layers import dense, rms_norm
from simko_jax.models.rope import apply_rope, inv_frequencies, rope_cos_sin
from simko_jax.models.transformer import ACT_AXES as _ACT
from simko_jax.parallel import constrain

LAYER_CACHE_AXES = {"k": ("batch", "kv_heads", "head_dim", "cache_length"),
                    "v": ("batch", "kv_heads", "cache_length", "head_dim")}
_NEG = -0.7 * float(jnp.finfo(jnp.float32).max)  # the masked-score value of models.attention


def split_layer_params(model) -> list[dict[str, jax.Array]]:
  """Per-layer decode weights in cfg.dtype, built once per sampling call (static slices of the stacked
  [L, ...] params). Keys: attn_norm, mlp_norm [D]; w_qkv [D, KVH, G+2, Dh] (G = N / KVH query heads of
  each kv head, then its key, then its value head); b_qkv [KVH, G+2, Dh] if attention_bias; q_norm,
  k_norm [Dh] if qk_norm; wo [N*Dh, D]; w_gate_up [D, 2, F]; w_down [F, D]."""
  cfg = model.cfg
  n, kvh, h = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  g = n // kvh
  stacked = model.layers.stacked(cfg)
  out = []
  for l in range(cfg.num_layers):
    a = {name: x[l].astype(cfg.dtype) for name, x in stacked.items()}
    d = a["wq"].shape[0]
    p = {"attn_norm": a["attn_norm"], "mlp_norm": a["mlp_norm"], "w_down": a["w_down"],
         "wo": a["wo"].reshape(n * h, d)}
    p["w_qkv"] = constrain(jnp.concatenate(
        [a["wq"].reshape(d, kvh, g, h), a["wk"][:, :, None], a["wv"][:, :, None]], axis=2),
        ("embed", "kv_heads", None, "head_dim"))
    if cfg.attention_bias:
      p["b_qkv"] = jnp.concatenate([a["bq"].reshape(kvh, g, h), a["bk"][:, None], a["bv"][:, None]], axis=1)
    if cfg.qk_norm:
      p["q_norm"], p["k_norm"] = a["q_norm"], a["k_norm"]
    p["w_gate_up"] = constrain(jnp.stack([a["w_gate"], a["w_up"]], axis=1), ("embed", None, "mlp"))
    out.append(p)
  return out


def lm_head_weight(model) -> jax.Array:
  """The LM-head matrix W [D, V] in cfg.dtype, stored [D, V] (built once per sampling call).

  With tied embeddings W is the [V, D] embedding transposed; a bfloat16 [B, D] x [V, D]^T matmul ran
  on XLA:CPU as float32 (the weight converted and the matmul at float32 speed: 18.6 ms per step at
  B = 32, SmolLM2) against 10.4 ms on a [D, V] copy. The barrier keeps XLA from folding the copy's
  transpose back into the matmul. Untied heads are [D, V] already and are not copied."""
  w = model.unembedding().astype(model.cfg.dtype)
  if model.cfg.tie_word_embeddings:
    w = jax.lax.optimization_barrier(w)
  return constrain(w, ("embed", "vocab"))


def _qkv(cfg, p, x_BxTxD, cos, sin):
  """Pre-norm q [B, T, N, Dh], k and v [B, T, KVH, Dh] of one layer, RoPE applied to q and k."""
  b, t, _ = x_BxTxD.shape
  g = cfg.num_heads // cfg.num_kv_heads
  h = rms_norm(x_BxTxD, p["attn_norm"], cfg.rms_norm_eps)
  qkv = dense("btd,dkjh->btkjh", h, p["w_qkv"])
  if cfg.attention_bias:
    qkv = qkv + p["b_qkv"]
  q = qkv[:, :, :, :g].reshape(b, t, cfg.num_heads, cfg.head_dim)  # head n = kv head n // g
  k, v = qkv[:, :, :, g], qkv[:, :, :, g + 1]
  if cfg.qk_norm:
    q = rms_norm(q, p["q_norm"], cfg.rms_norm_eps)
    k = rms_norm(k, p["k_norm"], cfg.rms_norm_eps)
  q = constrain(apply_rope(q, cos, sin), ("batch", "length", "heads", "head_dim"))
  return q, apply_rope(k, cos, sin), v


def _finish_layer(cfg, p, x_BxTxD, attn_BxTxNH):
  """Residual output projection, then the residual SwiGLU MLP (the rest of the model's `_block`)."""
  x = x_BxTxD + dense("btf,fd->btd", attn_BxTxNH, p["wo"]).astype(x_BxTxD.dtype)
  x = constrain(x, _ACT)
  h = rms_norm(x, p["mlp_norm"], cfg.rms_norm_eps)
  gate_up = dense("btd,dcf->btcf", h, p["w_gate_up"])
  mlp = dense("btf,fd->btd", jax.nn.silu(gate_up[:, :, 0]) * gate_up[:, :, 1], p["w_down"])
  return constrain(x + mlp.astype(x.dtype), _ACT)


def _embed(model, tokens_BxT, positions_BxT, rope):
  """Embeddings [B, T, D] and RoPE cos, sin [B, T, Dh] (the rows of the `rope_table` at the positions)."""
  x = constrain(model.embed.get_value()[tokens_BxT].astype(model.cfg.dtype), _ACT)
  return x, tuple(jnp.take(t, positions_BxT, axis=0, mode="clip") for t in rope)


def rope_table(cfg, cache_len: int) -> tuple[jax.Array, jax.Array]:
  """cos, sin [S, Dh] (float32) of positions 0..S-1 (`models.rope.rope_cos_sin`, same values), built once
  per sampling call outside the decode loop; `prefill` and `decode_step` gather their rows."""
  inv_freq = inv_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
  cos, sin = rope_cos_sin(jnp.arange(cache_len, dtype=jnp.int32)[None], inv_freq)
  return cos[0], sin[0]


def prefill(model, layer_params: list[dict[str, jax.Array]], tokens_BxT: jax.Array, positions_BxT: jax.Array,
            mask_BxT: jax.Array, rope: tuple[jax.Array, jax.Array], *, cache_len: int, n: int = 1,
            cache_dtype=None) -> dict[str, list[jax.Array]]:
  """Run T prompt tokens (left-padded; mask 1 = real) and return the cache of B*n rows: {"k": L lists of
  S/blk key blocks [B*n, KVH, Dh, blk] (blk = `key_block(S)`), "v": L lists of S/blk value blocks
  [B*n, KVH, blk, Dh]}; block j holds slots [j*blk, (j+1)*blk), slots [0, T)
  holding the prompt (row b*n + j = copy j of prompt b), slots [T, S) zero; arrays of
  `storage_dtype(cache_dtype)` (default cache_dtype: cfg.dtype). No logits are computed.
  positions_BxT: RoPE positions in [0, S) (pads may hold any position: they are masked keys); rope:
  `rope_table(cfg, S)`."""
  cfg = model.cfg
  t = tokens_BxT.shape[1]
  dtype = cfg.dtype if cache_dtype is None else cache_dtype
  x, (cos, sin) = _embed(model, tokens_BxT, positions_BxT, rope)
  mask = attention_mask(t, t, jnp.int32(0), mask_BxT)
  blk = key_block(cache_len)
  ks, vs = [], []
  for p in layer_params:
    q, k, v = _qkv(cfg, p, x, cos, sin)
    attn = gqa_attention(q, k, v, mask, cfg.attention_impl)
    x = _finish_layer(cfg, p, x, attn.reshape(*attn.shape[:2], -1))
    # [B, T, KVH, Dh] -> n copies per row, laid out and zero-padded to the layer's cache.
    k, v = (kv.astype(dtype).astype(storage_dtype(dtype)) for kv in (k, v))  # rounded to the cache dtype
    k = jnp.repeat(k, n, axis=0) if n > 1 else k
    v = jnp.repeat(v, n, axis=0) if n > 1 else v
    k_full = jnp.pad(jnp.transpose(k, (0, 2, 3, 1)), ((0, 0),) * 3 + ((0, cache_len - t),))
    ks.append([constrain(k_full[..., j:j + blk], LAYER_CACHE_AXES["k"]) for j in range(0, cache_len, blk)])
    v_full = jnp.pad(jnp.swapaxes(v, 1, 2), ((0, 0), (0, 0), (0, cache_len - t), (0, 0)))
    vs.append([constrain(v_full[:, :, j:j + blk], LAYER_CACHE_AXES["v"]) for j in range(0, cache_len, blk)])
  return {"k": ks, "v": vs}


def empty_cache(cfg, rows: int, cache_len: int, cache_dtype=None) -> dict[str, list[jax.Array]]:
  """A zeroed cache in the `prefill` layout (for prompts of length 1, where there is nothing to prefill)."""
  dtype = storage_dtype(cfg.dtype if cache_dtype is None else cache_dtype)
  kvh, h, layers = cfg.num_kv_heads, cfg.head_dim, cfg.num_layers
  blk = key_block(cache_len)
  return {"k": [[jnp.zeros((rows, kvh, h, blk), dtype) for _ in range(cache_len // blk)] for _ in range(layers)],
          "v": [[jnp.zeros((rows, kvh, blk, h), dtype) for _ in range(cache_len // blk)] for _ in range(layers)]}


# Bounds the per-step block writes and the HLO size for long caches. Measured decode steps (SmolLM2,
# B=32, 2 CPU cores): S=1024: 16 blocks of 64 150 ms, 4 of 256 198-208 ms, 1 block 200 ms; S=2048: 32
# blocks of 64 234 ms, 16 of 128 246 ms.
MAX_KEY_BLOCKS = 32


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


def _write_slot(blocks: list[jax.Array], new: jax.Array, slot: jax.Array, axis: int, kind: str,
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


def skip_blocks_with_cond() -> bool:
  """Whether `_attend` skips the blocks past the current slot with a `lax.cond` (CPU, TPU) or computes
  and masks them (GPU: there each cond is a device-to-host copy and a host sync; see module doc)."""
  return jax.default_backend() != "gpu"


def _attend(q_BxNxH, k_blocks, v_blocks, mask_BxS, slot, first_slot: int, value_dtype):
  """`models.attention.gqa_attention` (impl "xla") for one query per row on the layer cache: float32
  scores and softmax, head n uses kv head n // (N / KVH). Returns [B, 1, N*H] in q's dtype.
  value_dtype: the cache dtype (the probabilities are rounded to it before the value matmul, as the
  model rounds them to its values' dtype).

  Each block j (slots [j*blk, (j+1)*blk)) yields its own score max m_j, exp-sum l_j and unnormalised
  output o_j = exp(s_j - m_j) @ v_j, combined as sum_j e^(m_j - M) o_j / sum_j e^(m_j - M) l_j with
  M = max_j m_j (the same softmax, regrouped). A block that starts after `slot` holds no visible key:
  one `lax.cond` skips both of its matmuls (m_j = the masked value, l_j = 0, o_j = 0) where
  `skip_blocks_with_cond()`; elsewhere it is computed fully masked, so m_j = the masked value and
  e^(m_j - M) = 0 drops it. Blocks starting at or before `first_slot` (static) are always computed. A visible block whose keys are all masked
  (left padding) has m_j = the masked value, so e^(m_j - M) = 0 drops it: every row sees at least one
  real key (its prompt), so M is a real score."""
  b, n, h = q_BxNxH.shape
  kvh, blk = k_blocks[0].shape[1], k_blocks[0].shape[-1]
  g = n // kvh
  q = q_BxNxH.reshape(b, kvh, g, h)
  scale = 1.0 / float(h) ** 0.5

  def block(k, v, visible_Bxblk):
    qk = jnp.promote_types(q.dtype, k.dtype)  # float32 keys stored for a bfloat16 cache: no per-step cast
    s = jnp.einsum("bkgh,bkhs->bkgs", q.astype(qk), k.astype(qk), preferred_element_type=jnp.float32) * scale
    s = jnp.where(visible_Bxblk[:, None, None, :], s, _NEG)
    m = jnp.max(s, axis=-1)
    e = jnp.exp(s - m[..., None])
    o = jnp.einsum("bkgs,bksh->bkgh", e.astype(value_dtype), v, preferred_element_type=jnp.float32)
    return m, jnp.sum(e, axis=-1), o

  def nothing(k, v, visible_Bxblk):
    return (jnp.full((b, kvh, g), _NEG, jnp.float32), jnp.zeros((b, kvh, g), jnp.float32),
            jnp.zeros((b, kvh, g, h), jnp.float32))

  parts = []
  skip = skip_blocks_with_cond()
  for j, (k, v) in enumerate(zip(k_blocks, v_blocks)):
    visible = mask_BxS[:, j * blk:(j + 1) * blk]
    parts.append(jax.lax.cond(slot >= j * blk, block, nothing, k, v, visible) if skip and j * blk > first_slot
                 else block(k, v, visible))
  m_max = functools.reduce(jnp.maximum, [m for m, _, _ in parts])
  weights = [jnp.exp(m - m_max) for m, _, _ in parts]
  denom = sum(w * l for w, (_, l, _) in zip(weights, parts))
  out = sum(w[..., None] * o for w, (_, _, o) in zip(weights, parts)) / denom[..., None]
  return out.reshape(b, 1, n * h).astype(q_BxNxH.dtype)


def decode_step(model, layer_params: list[dict[str, jax.Array]], token_B: jax.Array,
                position_B: jax.Array, cache: dict[str, list[jax.Array]], slot: jax.Array,
                kv_mask_BxS: jax.Array, rope: tuple[jax.Array, jax.Array], first_slot: int = 0,
                cache_dtype=None, lm_head_DxV: jax.Array | None = None,
                ) -> tuple[jax.Array, dict[str, list[jax.Array]]]:
  """Feed one token per row at cache slot `slot` (traced int32); returns (float32 logits [B, V], cache).

  layer_params: `split_layer_params(model)`. cache: the `prefill` layout, each array updated in place
  when carried through a loop. kv_mask_BxS must already be 1 at `slot` for real tokens (the model's
  `decode` contract); the query attends to slots s <= slot with kv_mask 1. position_B: RoPE positions
  (cumsum(mask) - 1 convention), each < S. rope: `rope_table(cfg, S)`, built outside the loop.
  first_slot: a static lower bound on `slot` (the loop's first slot): key/value blocks starting at or
  before it are always visible and need no skip test, and blocks ending before it are never written.
  cache_dtype: as given to `prefill` (default cfg.dtype); new keys/values are rounded to it.
  lm_head_DxV: `lm_head_weight(model)`, built once outside the loop (default: the unembedding as is).
  """
  cfg = model.cfg
  dtype = cfg.dtype if cache_dtype is None else cache_dtype
  s = sum(block.shape[2] for block in cache["v"][0])
  slot = jnp.asarray(slot, jnp.int32)
  x, (cos, sin) = _embed(model, token_B[:, None], position_B[:, None], rope)
  mask_BxS = attention_mask(1, s, slot, kv_mask_BxS)[:, 0]
  new_k, new_v = [], []
  for p, k_cache, v_cache in zip(layer_params, cache["k"], cache["v"]):
    q, k, v = _qkv(cfg, p, x, cos, sin)
    # The new key [B, 1, KVH, Dh] -> [B, KVH, Dh, 1] and value -> [B, KVH, 1, Dh], written at the slot.
    new_k.append(_write_slot(k_cache, jnp.transpose(k, (0, 2, 3, 1)), slot, 3, "k", dtype, first_slot))
    new_v.append(_write_slot(v_cache, jnp.swapaxes(v, 1, 2), slot, 2, "v", dtype, first_slot))
    x = _finish_layer(cfg, p, x, _attend(q[:, 0], new_k[-1], new_v[-1], mask_BxS, slot, first_slot, dtype))
  h = rms_norm(x[:, 0], model.final_norm.get_value().astype(cfg.dtype), cfg.rms_norm_eps)
  # Not `lm_head_weight` here: inside a loop body its barrier would redo the copy every step.
  w = model.unembedding().astype(cfg.dtype) if lm_head_DxV is None else lm_head_DxV
  logits = jnp.einsum("bd,dv->bv", h, w, preferred_element_type=jnp.float32)
  return constrain(logits, ("batch", "vocab")), {"k": new_k, "v": new_v}
