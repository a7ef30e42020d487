"""The fused chunked path equals the unchunked one, in values and in gradients w.r.t. h and W."""

import jax
import jax.extend.core
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


def _dot_operand_dtypes(fn, *args):
  """[(lhs dtype, rhs dtype)] of every dot_general in fn's jaxpr, nested jaxprs included."""
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)
  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


def test_bfloat16_lm_head_backward_runs_in_bfloat16():
  """bf16 hidden with float32 master weights: all three LM-head matmuls (forward, dh, dW) take bf16
  operands (not float32, which ran at TF32 or float32 rate), dW comes back float32, and both
  gradients match the float32 computation to bf16 accuracy."""
  h, w, y, old, adv, mask = make(3, t=40, d=32, v=256)
  kw = dict(targets=y, old_logprobs=old, advantages=adv, mask=mask, method="simko", alpha=0.2)

  def loss(h, w):
    return fused_policy_loss(hidden=h, unembedding=w, chunk_size=16, **kw)[0]

  grad = jax.grad(loss, argnums=(0, 1))
  h16 = h.astype(jnp.bfloat16)
  dots = _dot_operand_dtypes(grad, h16, w)
  # forward, its recomputation under jax.checkpoint, dh, dW
  assert len(dots) >= 3 and all(d == ("bfloat16", "bfloat16") for d in dots), dots
  gh16, gw16 = grad(h16, w)
  assert gh16.dtype == jnp.bfloat16 and gw16.dtype == jnp.float32
  gh32, gw32 = grad(h16.astype(jnp.float32), w.astype(jnp.bfloat16).astype(jnp.float32))
  for got, want in ((gh16, gh32), (gw16, gw32)):
    got, want = np.asarray(got, np.float32), np.asarray(want)
    assert np.abs(got - want).max() <= 0.02 * np.abs(want).max(), np.abs(got - want).max()


def test_float32_lm_head_gradient_is_the_plain_gradient():
  h, w, *_ = make(4)
  g = jnp.asarray(np.random.default_rng(5).normal(size=(13, 101)), jnp.float32)
  from simko_jax.losses.chunked import lm_head_logits
  ours = jax.vjp(lm_head_logits, h[0], w)[1](g)
  plain = jax.vjp(lambda a, b: a @ b, h[0], w)[1](g)
  for a, b in zip(ours, plain):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
