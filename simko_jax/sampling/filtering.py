"""Choosing the next token from float32 logits: greedy, temperature, top-k, top-p (nucleus).

One function, `sample_next`, used by the decode loop of `simko_jax.sampling.sampler`:

  token_B, logprob_B = sample_next(logits_BxV, key, temperature, top_p, top_k=0, greedy=False)

`key` is one PRNG key for the batch, or [B] keys, one per row: then row r's draw depends only on
`key[r]` and its own logits, never on the other rows or on where r sits in the batch (the sampler
derives row keys from (prompt, sample, token index), so a response does not depend on its batch slot).

Log-prob convention (what the trainer recomputes): `logprob_B = log_softmax(logits / temperature)[token]`
over the *unfiltered* vocabulary, also under greedy decoding and top-k / top-p filtering. With
top_k > 0 or top_p < 1 the behaviour policy is the *renormalised filtered* distribution, which puts
more mass on each kept token than this log-prob says (log pi_behaviour = logprob - log(kept mass));
importance ratios computed from these log-probs are then those of the unfiltered tempered policy.

Cost (why it is shaped this way; V = 49k for SmolLM2): with top_k == 0 and top_p == 1 (the RL default)
nothing is sorted and the draw is two-level (`categorical`), so it needs ~450 random numbers a row, not
V. `top_k > 0` uses `lax.top_k` (partial selection) and applies top-p only inside those k candidates.
top_p < 1 alone looks for the nucleus in the NUCLEUS_CAP best tokens and sorts the whole vocabulary
only when some row's nucleus is larger (exact either way).
`top_k` and whether top-p is active are static (they change shapes/code); `temperature` and `top_p`
are traced scalars, so changing their values does not recompile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_NEG_INF = -jnp.inf
CHUNK = 256       # two-level draw: pick a chunk of the vocab, then a token inside it
NUCLEUS_CAP = 256  # top-p first looks for the nucleus among this many best tokens (exact fallback: sort)


def _per_row(key: jax.Array) -> bool:
  """True when `key` holds one key per row ([B] typed keys or [B, 2] raw uint32 keys)."""
  return key.ndim == (1 if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else 2)


def _draw(key: jax.Array, logits_BxK: jax.Array) -> jax.Array:
  """`jax.random.categorical` over the last axis, [B] int32; per-row keys draw each row on its own."""
  if _per_row(key):
    return jax.vmap(lambda k, row_K: jax.random.categorical(k, row_K))(key, logits_BxK).astype(jnp.int32)
  return jax.random.categorical(key, logits_BxK, axis=-1).astype(jnp.int32)


def _split(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Two independent keys (or per-row key arrays) from `key`."""
  keys = jax.vmap(jax.random.split)(key) if _per_row(key) else jax.random.split(key)
  return (keys[:, 0], keys[:, 1]) if _per_row(key) else (keys[0], keys[1])


def categorical(key: jax.Array, logits_BxV: jax.Array) -> jax.Array:
  """Exact draw from softmax(logits) per row ([B] int32) with O(V/CHUNK + CHUNK) random numbers a row.

  `jax.random.categorical` draws V Gumbels per row (threefry: ~17 ms for 32 x 49k on 2 CPU cores, half
  the cost of a SmolLM2 LM head). Here: P(chunk c) = mass_c / total, then P(token | c) = p / mass_c,
  whose product is softmax(logits). -inf logits have probability 0.
  """
  return categorical_and_logz(key, logits_BxV)[0]


def categorical_and_logz(key: jax.Array, logits_BxV: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`categorical` and logsumexp(logits) [B] float32 from the same exp pass: the chunk masses the draw
  needs also sum to the partition function, so the unfiltered sampler reads the logits twice, not four
  times (~1.4 ms of a 32 x 49k step on 2 CPU cores)."""
  b, v = logits_BxV.shape
  if v <= 2 * CHUNK:
    return _draw(key, logits_BxV), jax.nn.logsumexp(logits_BxV, axis=-1)
  n_chunks = -(-v // CHUNK)
  pad = n_chunks * CHUNK - v
  logits = jnp.pad(logits_BxV, ((0, 0), (0, pad)), constant_values=_NEG_INF) if pad else logits_BxV
  max_Bx1 = jnp.max(logits, axis=-1, keepdims=True)
  chunk_probs = jnp.exp(logits - max_Bx1).reshape(b, n_chunks, CHUNK)  # [B, n_chunks, CHUNK]
  chunk_mass = chunk_probs.sum(-1)
  key_chunk, key_token = _split(key)
  chunk_B = _draw(key_chunk, jnp.log(chunk_mass))
  inside_probs = jnp.take_along_axis(chunk_probs, chunk_B[:, None, None], axis=1)[:, 0]
  token_B = _draw(key_token, jnp.log(inside_probs))
  logz_B = max_Bx1[:, 0] + jnp.log(chunk_mass.sum(-1))
  return (chunk_B * CHUNK + token_B).astype(jnp.int32), logz_B


def _nucleus_mask(sorted_logits_BxC: jax.Array, top_p: jax.Array, logz_Bx1: jax.Array) -> jax.Array:
  """Keep-mask over the C candidate logits sorted in descending order, probabilities exp(logit - logz): the smallest
  prefix whose mass reaches `top_p` (HF convention: a token is kept iff the mass strictly before it is
  < top_p; the most likely token is always kept)."""
  probs = jnp.exp(sorted_logits_BxC - logz_Bx1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  return (mass_before < top_p).at[:, 0].set(True)


def _draw_sorted(key, sorted_BxC, idx_BxC, keep_BxC):
  pick_B = categorical(key, jnp.where(keep_BxC, sorted_BxC, _NEG_INF))
  return jnp.take_along_axis(idx_BxC, pick_B[:, None], axis=-1)[:, 0].astype(jnp.int32)


def _top_p_draw(key, scaled_BxV, logz_B, top_p):
  """Top-p over the full vocabulary. Fast path: when, in every row, the NUCLEUS_CAP best tokens hold
  >= top_p of the mass, the nucleus lies inside them (`lax.top_k`, no sort). Otherwise sort all V."""
  logz = logz_B[:, None]
  cap = min(NUCLEUS_CAP, scaled_BxV.shape[-1])
  vals, idx = jax.lax.top_k(scaled_BxV, cap)
  fits = jnp.all(jnp.sum(jnp.exp(vals - logz), axis=-1) >= top_p)

  def fast(_):
    return _draw_sorted(key, vals, idx, _nucleus_mask(vals, top_p, logz))

  def full(_):
    order = jnp.argsort(-scaled_BxV, axis=-1)
    srt = jnp.take_along_axis(scaled_BxV, order, axis=-1)
    return _draw_sorted(key, srt, order, _nucleus_mask(srt, top_p, logz))

  return jax.lax.cond(fits, fast, full, None)


def sample_next(logits_BxV: jax.Array, key: jax.Array, temperature: jax.Array | float,
                top_p: jax.Array | float = 1.0, *, top_k: int = 0, greedy: bool = False,
                use_top_p: bool | None = None) -> tuple[jax.Array, jax.Array]:
  """Draw one token per row. Returns (token_B int32, logprob_B float32).

  logits_BxV: float32 logits. key: one PRNG key for the whole batch (rows get independent draws), or
  [B] keys, one per row (row r's draw then depends only on key[r] and logits_BxV[r]).
  temperature > 0 (also used for the returned log-prob under greedy). top_k: static int, 0 = off.
  use_top_p: static; default `top_p < 1` when `top_p` is a Python float (pass it explicitly when
  `top_p` is traced). greedy: argmax of the logits (ties -> lowest id), ignoring filters and key.
  """
  logits_BxV = logits_BxV.astype(jnp.float32)
  scaled_BxV = logits_BxV / temperature
  if use_top_p is None:
    use_top_p = not isinstance(top_p, (int, float)) or top_p < 1.0
  if not (greedy or top_k > 0 or use_top_p):  # the RL default: one exp pass for the draw and logz
    token_B, logz_B = categorical_and_logz(key, scaled_BxV)
    picked_B = jnp.take_along_axis(scaled_BxV, token_B[:, None], axis=-1)[:, 0]
    return token_B, picked_B - logz_B
  logz_B = jax.nn.logsumexp(scaled_BxV, axis=-1)
  if greedy:
    token_B = jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  elif top_k > 0:
    # Partial selection of k candidates (descending), top-p within them (renormalised over the k, as
    # HF's TopK-then-TopP warpers), draw among the survivors.
    vals, idx = jax.lax.top_k(scaled_BxV, top_k)
    keep = (_nucleus_mask(vals, top_p, jax.nn.logsumexp(vals, axis=-1, keepdims=True)) if use_top_p
            else jnp.ones(vals.shape, bool))
    token_B = _draw_sorted(key, vals, idx, keep)
  else:
    token_B = _top_p_draw(key, scaled_BxV, logz_B, top_p)
  picked_B = jnp.take_along_axis(scaled_BxV, token_B[:, None], axis=-1)[:, 0]
  return token_B, picked_B - logz_B
