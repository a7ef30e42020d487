"""Choosing the next token from float32 logits: greedy, temperature, top-k, top-p (nucleus).

One function, `sample_next`, used by the decode loop of `simko_jax.sampling.sampler`:

  token_B, logprob_B = sample_next(logits_BxV, key, temperature, top_p, top_k=0, greedy=False)

Log-prob convention (what the trainer recomputes): `logprob_B = log_softmax(logits / temperature)[token]`
over the *unfiltered* vocabulary, also under greedy decoding and top-k / top-p filtering. With
top_k > 0 or top_p < 1 the behaviour policy is the *renormalised filtered* distribution, which puts
more mass on each kept token than this log-prob says (log pi_behaviour = logprob - log(kept mass));
importance ratios computed from these log-probs are then those of the unfiltered tempered policy.

Cost (why it is shaped this way; V = 49k for SmolLM2): with top_k == 0 and top_p == 1 (the RL default)
nothing is sorted: one Gumbel-max draw over V. `top_k > 0` uses `lax.top_k` (partial selection) and
applies top-p only inside those k candidates. Only top_p < 1 with top_k == 0 sorts the whole vocabulary.
`top_k` and whether top-p is active are static (they change shapes/code); `temperature` and `top_p`
are traced scalars, so changing their values does not recompile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_NEG_INF = -jnp.inf


def _nucleus_mask(sorted_logits_BxK: jax.Array, top_p: jax.Array) -> jax.Array:
  """Boolean keep-mask over logits sorted in descending order: the smallest prefix whose probability
  mass reaches `top_p` (HF convention: a token is kept iff the mass strictly before it is < top_p; the
  most likely token is always kept)."""
  probs = jax.nn.softmax(sorted_logits_BxK, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  keep = mass_before < top_p
  return keep.at[:, 0].set(True)


def sample_next(logits_BxV: jax.Array, key: jax.Array, temperature: jax.Array | float,
                top_p: jax.Array | float = 1.0, *, top_k: int = 0, greedy: bool = False,
                use_top_p: bool | None = None) -> tuple[jax.Array, jax.Array]:
  """Draw one token per row. Returns (token_B int32, logprob_B float32).

  logits_BxV: float32 logits. key: one PRNG key for the whole batch (rows get independent draws).
  temperature > 0 (also used for the returned log-prob under greedy). top_k: static int, 0 = off.
  use_top_p: static; default `top_p < 1` when `top_p` is a Python float (pass it explicitly when
  `top_p` is traced). greedy: argmax of the logits (ties -> lowest id), ignoring filters and key.
  """
  logits_BxV = logits_BxV.astype(jnp.float32)
  scaled_BxV = logits_BxV / temperature
  logz_B = jax.nn.logsumexp(scaled_BxV, axis=-1)
  if use_top_p is None:
    use_top_p = not isinstance(top_p, (int, float)) or top_p < 1.0
  if greedy:
    token_B = jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  elif top_k > 0:
    # Partial selection of k candidates (descending), top-p within them, draw among the survivors.
    vals_BxK, idx_BxK = jax.lax.top_k(scaled_BxV, top_k)
    if use_top_p:
      vals_BxK = jnp.where(_nucleus_mask(vals_BxK, top_p), vals_BxK, _NEG_INF)
    pick_B = jax.random.categorical(key, vals_BxK, axis=-1)
    token_B = jnp.take_along_axis(idx_BxK, pick_B[:, None], axis=-1)[:, 0].astype(jnp.int32)
  elif use_top_p:
    # Full-vocabulary sort: only on this path (top-p without top-k).
    order_BxV = jnp.argsort(-scaled_BxV, axis=-1)
    sorted_BxV = jnp.take_along_axis(scaled_BxV, order_BxV, axis=-1)
    sorted_BxV = jnp.where(_nucleus_mask(sorted_BxV, top_p), sorted_BxV, _NEG_INF)
    pick_B = jax.random.categorical(key, sorted_BxV, axis=-1)
    token_B = jnp.take_along_axis(order_BxV, pick_B[:, None], axis=-1)[:, 0].astype(jnp.int32)
  else:
    token_B = jax.random.categorical(key, scaled_BxV, axis=-1).astype(jnp.int32)
  picked_B = jnp.take_along_axis(scaled_BxV, token_B[:, None], axis=-1)[:, 0]
  return token_B, picked_B - logz_B
