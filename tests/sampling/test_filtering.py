"""`sample_next` against numpy brute force: support and frequencies of top-k / top-p / greedy draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.sampling import sample_next

V = 12
DRAWS = 4000


def _logits():
  return np.random.default_rng(0).normal(size=(1, V)).astype(np.float32) * 1.5


def _draw(logits, **kw):
  keys = jax.random.split(jax.random.key(0), DRAWS)
  fn = jax.jit(jax.vmap(lambda k: sample_next(jnp.asarray(logits), k, 0.8, **kw)))
  tok, lp = fn(keys)
  return np.asarray(tok)[:, 0], np.asarray(lp)[:, 0]


def _reference(logits, top_k=0, top_p=1.0):
  """Renormalised filtered distribution (HF convention) and the unfiltered tempered log-probs."""
  scaled = logits[0].astype(np.float64) / 0.8
  logp = scaled - np.log(np.exp(scaled).sum())
  order = np.argsort(-scaled)
  keep = np.zeros(V, bool)
  kept_order = order[:top_k] if top_k else order
  probs = np.exp(logp[kept_order]) / np.exp(logp[kept_order]).sum()
  mass_before = np.cumsum(probs) - probs
  keep[kept_order[(mass_before < top_p) | (np.arange(len(kept_order)) == 0)]] = True
  filtered = np.where(keep, np.exp(logp), 0.0)
  return filtered / filtered.sum(), logp


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (4, 1.0), (0, 0.7), (5, 0.6)])
def test_filtered_frequencies_and_unfiltered_logprobs(top_k, top_p):
  logits = _logits()
  tok, lp = _draw(logits, top_p=top_p, top_k=top_k)
  want, logp = _reference(logits, top_k, top_p)
  assert set(np.unique(tok)) <= set(np.flatnonzero(want))
  freq = np.bincount(tok, minlength=V) / DRAWS
  np.testing.assert_allclose(freq, want, atol=0.03)
  np.testing.assert_allclose(lp, logp[tok], atol=1e-5)  # unfiltered log-prob, not the renormalised one


def test_greedy_is_argmax_and_ignores_key():
  logits = np.random.default_rng(1).normal(size=(5, V)).astype(np.float32)
  for seed in (0, 1):
    tok, lp = sample_next(jnp.asarray(logits), jax.random.key(seed), 2.0, greedy=True)
    np.testing.assert_array_equal(np.asarray(tok), logits.argmax(-1))
    ref = np.asarray(jax.nn.log_softmax(jnp.asarray(logits) / 2.0))[np.arange(5), logits.argmax(-1)]
    np.testing.assert_allclose(np.asarray(lp), ref, atol=1e-6)


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_large_vocab_paths_match_reference(top_p):
  """V > 2*CHUNK: the two-level draw and the top-p fast path (peaked rows) / sort fallback (flat rows)."""
  v = 1000
  rng = np.random.default_rng(2)
  peaked = rng.normal(size=(1, v)).astype(np.float32) * 4.0  # nucleus of 0.9 inside 256 tokens
  flat = rng.normal(size=(1, v)).astype(np.float32) * 0.1    # nucleus of 0.9 needs ~900 tokens
  for logits in (peaked, flat):
    keys = jax.random.split(jax.random.key(3), DRAWS)
    draw = jax.jit(jax.vmap(lambda k: sample_next(jnp.asarray(logits), k, 1.0, top_p)))
    tok, lp = (np.asarray(a)[:, 0] for a in draw(keys))
    probs = np.exp(logits[0].astype(np.float64) - logits[0].max())
    probs /= probs.sum()
    # The unfiltered log-prob (top_p = 1: logz from the draw's chunk masses; else a separate logsumexp).
    np.testing.assert_allclose(lp, np.log(probs[tok]), atol=1e-5)
    order = np.argsort(-probs)
    keep = order[(np.cumsum(probs[order]) - probs[order]) < top_p]
    assert set(tok.tolist()) <= set(keep.tolist())
    # Compare frequencies of the 10 most likely tokens and the rest (binned, so the test stays short).
    want = np.append(probs[order[:10]], 1 - probs[order[:10]].sum())
    want = want / probs[keep].sum() if top_p < 1 else want
    want[-1] = 1 - want[:-1].sum()
    got = np.append([np.mean(tok == t) for t in order[:10]], 0)
    got[-1] = 1 - got[:-1].sum()
    np.testing.assert_allclose(got, want, atol=0.03)


@pytest.mark.parametrize("v,top_k,top_p", [(V, 0, 1.0), (1000, 0, 1.0), (1000, 5, 1.0), (1000, 0, 0.9)])
def test_per_row_keys_draw_each_row_on_its_own(v, top_k, top_p):
  """[B] keys: row r's token depends on key[r] and its logits only, not on the batch around it (the
  sampler's rows keep their response whatever batch slot they decode in)."""
  logits = np.random.default_rng(3).normal(size=(6, v)).astype(np.float32) * 3.0
  keys = jax.random.split(jax.random.key(5), 6)
  draw = jax.jit(lambda l, k: sample_next(l, k, 1.0, top_p, top_k=top_k))
  tok, lp = draw(jnp.asarray(logits), keys)
  for r in range(6):
    alone = draw(jnp.asarray(logits[r:r + 1]), keys[r:r + 1])
    assert int(alone[0][0]) == int(tok[r])
    np.testing.assert_allclose(float(alone[1][0]), float(lp[r]), atol=1e-6)
  flipped = draw(jnp.asarray(logits[::-1]), keys[::-1])  # rows in other slots
  np.testing.assert_array_equal(np.asarray(flipped[0])[::-1], np.asarray(tok))
  assert len(set(np.asarray(tok).tolist())) > 1
