"""The fused chunked path equals the unchunked one, in values and in gradients w.r.t. h and W."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.losses import fused_policy_loss, policy_loss, token_stats_from_hidden
from simko_jax.losses import token_stats_from_logits


def make(seed, b=3, t=13, d=16, v=101):
  rng = np.random.default_rng(seed)
  h = jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(d, v)) * 0.5, jnp.float32)
  y = jnp.asarray(rng.integers(0, v, size=(b, t)))
  old = jnp.asarray(rng.normal(size=(b, t)) - 4.0, jnp.float32)
  adv = jnp.asarray([1.0, -1.0, 0.3], jnp.float32)
  mask = jnp.asarray(rng.random((b, t)) > 0.2, jnp.float32)
  return h, w, y, old, adv, mask


@pytest.mark.parametrize("chunk_size", [1, 7, 13, 64])
def test_stats_equal_unchunked(chunk_size):
  h, w, y, *_ = make(0)
  chunked = token_stats_from_hidden(h, w, y, num_candidates=5, chunk_size=chunk_size)
  full = token_stats_from_logits(h @ w, y, num_candidates=5)
  for a, b in zip(chunked, full):
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("method", ["simko", "grpo"])
def test_loss_and_gradients_equal_unchunked(method):
  h, w, y, old, adv, mask = make(1)
  kw = dict(targets=y, old_logprobs=old, advantages=adv, mask=mask, method=method, alpha=0.2,
            temperature=0.9)

  def chunked(h, w):
    return fused_policy_loss(hidden=h, unembedding=w, chunk_size=5, **kw)[0]

  def full(h, w):
    return policy_loss(logits=jnp.einsum("btd,dv->btv", h, w), **kw)[0]

  (v1, (gh1, gw1)) = jax.value_and_grad(chunked, argnums=(0, 1))(h, w)
  (v2, (gh2, gw2)) = jax.value_and_grad(full, argnums=(0, 1))(h, w)
  np.testing.assert_allclose(v1, v2, atol=1e-5)
  np.testing.assert_allclose(gh1, gh2, atol=1e-5)
  np.testing.assert_allclose(gw1, gw2, atol=1e-5)
  assert np.abs(np.asarray(gw2)).max() > 1e-4


def test_chunked_backward_never_materialises_full_logits():
  """No intermediate in the compiled gradient is as large as [tokens, vocab]."""
  h, w, y, old, adv, mask = make(2, b=4, t=64, d=8, v=512)
  kw = dict(targets=y, old_logprobs=old, advantages=adv[jnp.array([0, 1, 2, 0])],
            mask=jnp.ones((4, 64)))
  grad_fn = jax.jit(jax.grad(
      lambda h, w: fused_policy_loss(hidden=h, unembedding=w, chunk_size=32, **kw)[0],
      argnums=(0, 1)))
  hlo = grad_fn.lower(h, w).compile().as_text()
  full_bytes = 4 * 64 * 512 * 4
  import re
  shapes = re.findall(r"f32\[([\d,]+)\]", hlo)
  sizes = [int(np.prod([int(s) for s in shape.split(",")])) * 4 for shape in shapes if shape]
  assert max(sizes) < full_bytes, max(sizes)
