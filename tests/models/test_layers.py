"""`models.layers.dense`: the model's and sampler's einsum, accumulated in float32 explicitly on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.models.layers import dense


def _operands(dtype, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((2, 5, 48)), dtype)
  w = jnp.asarray(rng.standard_normal((48, 3, 32)) * 0.1, dtype)
  return x, w


def test_float32_is_the_plain_einsum():
  x, w = _operands(jnp.float32)
  np.testing.assert_array_equal(np.asarray(dense("btd,dkf->btkf", x, w)),
                                np.asarray(jnp.einsum("btd,dkf->btkf", x, w)))


@pytest.mark.parametrize("seed", [0, 1])
def test_bfloat16_is_float32_accumulation_rounded_once(seed):
  """Same dtype as the plain einsum; values = the exact float32 products of the bf16 inputs summed in
  float32 (numpy in float64 here) and rounded once to bf16: at most one bf16 step apart."""
  x, w = _operands(jnp.bfloat16, seed)
  out = dense("btd,dkf->btkf", x, w)
  assert out.dtype == jnp.bfloat16 == jnp.einsum("btd,dkf->btkf", x, w).dtype
  ref = np.einsum("btd,dkf->btkf", np.asarray(x, np.float64), np.asarray(w, np.float64))
  got = np.asarray(out, np.float64)
  np.testing.assert_allclose(got, ref, rtol=2.0 ** -8, atol=1e-6)
  plain = np.asarray(jnp.einsum("btd,dkf->btkf", x, w), np.float64)
  np.testing.assert_allclose(got, plain, rtol=2.0 ** -7, atol=1e-6)


def test_bfloat16_on_cpu_asks_for_float32_accumulation():
  """The reason `dense` exists: XLA:CPU's bf16 x bf16 -> bf16 dot takes a slow float32 fallback, while
  bf16 x bf16 -> f32 goes to its dot library. Elsewhere the einsum is left as is."""
  x, w = _operands(jnp.bfloat16)
  hlo = jax.jit(lambda x, w: dense("btd,dkf->btkf", x, w)).lower(x, w).as_text()
  dots = [line for line in hlo.splitlines() if "dot_general" in line and "=" in line]
  assert dots
  want = "f32" if jax.default_backend() == "cpu" else "bf16"
  assert all(f"-> tensor<2x5x3x32x{want}>" in line for line in dots), dots
