"""`Transformer`: attention implementations agree, remat changes no gradient. (Parity with HF:
`test_hf_parity.py`; the cached prefill / decode path: `test_inference.py`.)"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from simko_jax.models import Transformer, tiny_llama3, tiny_qwen3
from tests.models.hf_helpers import left_padded_batch


def test_attention_impl_jax_matches_xla():
  cfg = tiny_qwen3()
  tokens, mask = left_padded_batch(cfg.vocab_size, lengths=(5, 3), total=5)
  a = Transformer(cfg, rngs=nnx.Rngs(0))
  b = Transformer(cfg.replace(attention_impl="jax"), rngs=nnx.Rngs(0))
  la = np.asarray(a(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask)))
  lb = np.asarray(b(jnp.asarray(tokens), attention_mask_BxT=jnp.asarray(mask)))
  real = mask.astype(bool)
  np.testing.assert_allclose(la[real], lb[real], atol=1e-5, rtol=0)


def test_remat_same_grads():
  cfg = tiny_llama3()
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 6)), jnp.int32)

  def grads(c):
    graphdef, state = nnx.split(Transformer(c, rngs=nnx.Rngs(0)))

    def loss(state):
      return jnp.mean(jax.nn.log_softmax(nnx.merge(graphdef, state)(tokens))[..., 0])

    return jax.jit(jax.grad(loss))(state)

  ref = grads(cfg)
  for policy in ("full", "dots_saveable"):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), ref,
                 grads(cfg.replace(remat=policy)))
