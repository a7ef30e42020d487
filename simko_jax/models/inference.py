"""Prefill and one-token decoding over a per-layer KV cache updated in place (the sampler's hot loop).

  layer_params = unstack_layers(model)            # once per sampling call, outside the loop
  rope = rope_table(model.cfg, S)                 # likewise
  cache = prefill(model, layer_params, prompt_BxT, positions_BxT, mask_BxT, rope, cache_len=S, n=n)
  logits_BxV, cache = decode_step(model, layer_params, token_B, position_B, cache, slot, kv_mask_BxS, rope)

The same `models.block.block` as the model's `Transformer.__call__` (tests check tokens and log-probs
against the full forward), unrolled over per-layer weight slices, with the blocked-cache attention of
`models.kv_cache` as its attention strategy while decoding. Each choice was measured on SmolLM2-135M,
B=32, S=192, float32, 2 CPU cores (`benchmarks/sampling.py`; decode-step times from a 32-step loop):
  * the layers are unrolled with per-layer weights sliced once outside the loop: inside a scan, XLA:CPU
    copies every layer's weights (dynamic-slice, 0.42 GB per step) and cache before its dots, and a
    scan over a stacked cache copies the whole cache every step. Each layer's cache blocks are
    while-loop carries written by one-slot `dynamic_update_slice`s at the new slot (in place). Cost: one copy
    of the layer weights in cfg.dtype while sampling; compile time grows with depth.
  * cache layout per layer: keys transposed and values kv-major, both split into `key_block(S)`-slot
    blocks (64 slots, at most `MAX_KEY_BLOCKS`): keys [B, K, Dh, blk], values [B, K, blk, Dh]. Both
    attention contractions are then plain [Q, Dh] x [Dh, blk] and [Q, blk] x [blk, Dh] matmuls per
    (row, kv head). Scores over 30 layers: the model's [B, S, K, Dh] made XLA:CPU transpose the cache
    every step (attention 130 ms/step); kv-major [B, K, S, Dh] keys 20 ms/step, transposed
    [B, K, Dh, S] keys 13-14 ms, 64-slot key blocks 6.6 ms (XLA:CPU's batched matmul is far faster
    with 64 output columns than with 192). A new key/value is written into its block by
    `kv_cache.write_slot` without copying any block.
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
  * fused weights (the model's stored layout, `models.layout`, fused once at import): q/k/v are one
    [D, K, Q+2, Dh] matmul (per kv head: its Q query heads, then its key and value head, so a
    "kv_heads" sharding splits whole groups) and gate/up one [D, 2, F] matmul; the output projection is
    a flat [H*Dh, D] matrix, which stops XLA:CPU from transposing the [H, Dh, D] weight on every step to
    match the attention output's layout (5 ms/step).
  * layers of different kinds (Gemma's sliding-window / global layers, `cfg.layer_kinds()`) are unrolled
    like the rest, each given its kind's mask and RoPE rows (static per layer: no indexing, no branch).
  * RoPE's cos/sin come from a [Lk, S, Dh] table (Lk RoPE variants, one per layer kind) built once per
    call, gathered by position: computed inside
    the step, XLA fused them into every layer's RoPE and evaluated sin/cos per head and layer (2.9 ms
    per step in an XLA profile; 0.3 ms with the table).
  * prefill runs the same unrolled layers over the prompt and writes each layer's keys/values into its
    cache directly (no [L, B, S, K, Dh] cache, no second per-call copy of the weights).
  * bfloat16 on XLA:CPU (`--dtype bfloat16` of the benchmark: 250 -> 453 tok/s): dots accumulate in
    float32 explicitly (`models.layers.dense`), the cache is stored as float32 (`kv_cache.storage_dtype`; the
    values stay bf16-rounded) and the tied LM head is a [D, V] copy made once per call
    (`lm_head_weight`). Elsewhere (GPU, TPU) only the LM-head copy applies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.models.attention import attention_mask
from simko_jax.models.block import attention_options, block, full_attention, kind_masks
from simko_jax.models.kv_cache import cache_attention, key_block, prompt_cache
from simko_jax.models.layout import layer_param_specs
from simko_jax.models.rope import rope_by_kind
from simko_jax.models.transformer import embed_tokens, final_norm, lm_logits
from simko_jax.parallel import constrain


def unstack_layers(model) -> list[dict[str, jax.Array]]:
  """Per-layer weights in cfg.dtype, built once per sampling call: static slices of the stacked
  [L, ...] params (already in the fused layout of `models.layout`; nothing is concatenated here)."""
  cfg = model.cfg
  specs = layer_param_specs(cfg)
  stacked = model.layers.stacked(cfg)
  return [{name: constrain(x[l].astype(cfg.dtype), specs[name][1]) for name, x in stacked.items()}
          for l in range(cfg.num_layers)]


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


def rope_table(cfg, cache_len: int) -> tuple[jax.Array, jax.Array]:
  """cos, sin [Lk, S, Dh] (float32) of positions 0..S-1 for each layer kind (`models.rope.rope_by_kind`,
  same values; Lk = cfg.num_layer_kinds()), built once per sampling call outside the decoding loop;
  `prefill` and `decode_step` gather their rows."""
  cos, sin = rope_by_kind(cfg, jnp.arange(cache_len, dtype=jnp.int32)[None])
  return cos[:, 0], sin[:, 0]


def _embed(model, tokens_BxT, positions_BxT, rope):
  """Embeddings [B, T, D] and RoPE cos, sin [Lk, B, T, Dh] (the rows of the `rope_table` at the
  positions, per layer kind)."""
  x = embed_tokens(model.cfg, model.embed.get_value(), tokens_BxT)
  return x, tuple(jnp.take(t, positions_BxT, axis=1, mode="clip") for t in rope)


def prefill(model, layer_params: list[dict[str, jax.Array]], tokens_BxT: jax.Array, positions_BxT: jax.Array,
            mask_BxT: jax.Array, rope: tuple[jax.Array, jax.Array], *, cache_len: int, n: int = 1,
            cache_dtype=None) -> dict[str, list[list[jax.Array]]]:
  """Run T prompt tokens (left-padded; mask 1 = real) and return the cache of B*n rows: {"k": L lists of
  S/blk key blocks [B*n, K, Dh, blk] (blk = `kv_cache.key_block(S)`), "v": L lists of S/blk value
  blocks [B*n, K, blk, Dh]}; block j holds slots [j*blk, (j+1)*blk), slots [0, T) holding the prompt
  (row b*n + j = copy j of prompt b), slots [T, S) zero; arrays of `kv_cache.storage_dtype(cache_dtype)`
  (default cache_dtype: cfg.dtype). No logits are computed. positions_BxT: RoPE positions in [0, S)
  (pads may hold any position: they are masked keys); rope: `rope_table(cfg, S)`."""
  cfg = model.cfg
  dtype = cfg.dtype if cache_dtype is None else cache_dtype
  x, (cos_N, sin_N) = _embed(model, tokens_BxT, positions_BxT, rope)
  masks_LkxBxTxT = kind_masks(cfg, mask_BxT)
  ks, vs = [], []
  for p, kind in zip(layer_params, cfg.layer_kinds()):
    attend = full_attention(masks_LkxBxTxT[kind], cfg.attention_impl, **attention_options(cfg))
    x, (k, v) = block(cfg, x, p, (cos_N[kind], sin_N[kind]), attend)
    k_blocks, v_blocks = prompt_cache(k, v, cache_len=cache_len, n=n, cache_dtype=dtype)
    ks.append(k_blocks)
    vs.append(v_blocks)
  return {"k": ks, "v": vs}


def decode_step(model, layer_params: list[dict[str, jax.Array]], token_B: jax.Array,
                position_B: jax.Array, cache: dict[str, list[list[jax.Array]]], slot: jax.Array,
                kv_mask_BxS: jax.Array, rope: tuple[jax.Array, jax.Array], first_slot: int = 0,
                cache_dtype=None, lm_head_DxV: jax.Array | None = None,
                ) -> tuple[jax.Array, dict[str, list[list[jax.Array]]]]:
  """Feed one token per row at cache slot `slot` (traced int32); returns (float32 logits [B, V], cache).

  layer_params: `unstack_layers(model)`. cache: the `prefill` layout, each array updated in place
  when carried through a loop. kv_mask_BxS must already be 1 at `slot` for real tokens; the query
  attends to slots s <= slot with kv_mask 1. position_B: RoPE positions (cumsum(mask) - 1
  convention), each < S. rope: `rope_table(cfg, S)`, built outside the loop. first_slot: a static
  lower bound on `slot` (the loop's first slot): key/value blocks starting at or before it are always
  visible and need no skip test, and blocks ending before it are never written. cache_dtype: as given
  to `prefill` (default cfg.dtype); new keys/values are rounded to it. lm_head_DxV:
  `lm_head_weight(model)`, built once outside the loop (default: the unembedding as is).
  """
  cfg = model.cfg
  dtype = cfg.dtype if cache_dtype is None else cache_dtype
  s = sum(block_.shape[2] for block_ in cache["v"][0])
  slot = jnp.asarray(slot, jnp.int32)
  x, (cos_N, sin_N) = _embed(model, token_B[:, None], position_B[:, None], rope)
  masks_BxS = [attention_mask(1, s, slot, kv_mask_BxS, cfg.sliding_window if kind else None)[:, 0]
               for kind in range(cfg.num_layer_kinds())]  # per layer kind: global, sliding window
  new_k, new_v = [], []
  for p, kind, k_blocks, v_blocks in zip(layer_params, cfg.layer_kinds(), cache["k"], cache["v"]):
    attend = cache_attention(k_blocks, v_blocks, masks_BxS[kind], slot, first_slot, dtype,
                             **attention_options(cfg))
    x, (k_blocks, v_blocks) = block(cfg, x, p, (cos_N[kind], sin_N[kind]), attend)
    new_k.append(k_blocks)
    new_v.append(v_blocks)
  # Not `lm_head_weight` here: inside a loop body its barrier would redo the copy every step.
  w = model.unembedding().astype(cfg.dtype) if lm_head_DxV is None else lm_head_DxV
  logits_Bx1xV = lm_logits(final_norm(cfg, x, model.final_norm.get_value()), w, cfg.final_logit_softcapping)
  return logits_Bx1xV[:, 0], {"k": new_k, "v": new_v}
