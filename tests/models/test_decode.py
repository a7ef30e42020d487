"""KV-cache decoding equals the full forward (prefill + single-token steps, left-padded prompts)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from simko_jax.models import Transformer, tiny_llama3, tiny_qwen2, tiny_qwen3
from tests.models.hf_helpers import left_padded_batch


@pytest.mark.parametrize("make_cfg", [tiny_llama3, tiny_qwen2, tiny_qwen3])
def test_prefill_and_steps_match_forward(make_cfg):
  cfg = make_cfg()
  model = Transformer(cfg, rngs=nnx.Rngs(1))
  prompt, pmask = left_padded_batch(cfg.vocab_size, lengths=(6, 4, 2), total=6, seed=1)
  steps = 4
  rng = np.random.default_rng(2)
  new = rng.integers(3, cfg.vocab_size, (3, steps)).astype(np.int32)
  full_tokens = np.concatenate([prompt, new], axis=1)
  full_mask = np.concatenate([pmask, np.ones_like(new)], axis=1)
  ref = np.asarray(model(jnp.asarray(full_tokens), attention_mask_BxT=jnp.asarray(full_mask)))

  max_len = 16
  graphdef, state = nnx.split(model)

  @jax.jit
  def decode(state, tokens, positions, cache, index, kv_mask):
    m = nnx.merge(graphdef, state)
    return m.decode(tokens, positions, cache, index, kv_mask)

  cache = model.init_cache(3, max_len)
  kv_mask = np.zeros((3, max_len), np.int32)
  kv_mask[:, :6] = pmask
  positions = np.maximum(np.cumsum(pmask, -1) - 1, 0)
  logits, cache = decode(state, jnp.asarray(prompt), jnp.asarray(positions), cache, jnp.int32(0),
                         jnp.asarray(kv_mask))
  got = [np.asarray(logits)]
  next_pos = pmask.sum(-1)
  for i in range(steps):
    kv_mask[:, 6 + i] = 1
    logits, cache = decode(state, jnp.asarray(new[:, i:i + 1]), jnp.asarray(next_pos[:, None] + i),
                           cache, jnp.int32(6 + i), jnp.asarray(kv_mask))
    got.append(np.asarray(logits))
  got = np.concatenate(got, axis=1)
  real = full_mask.astype(bool)
  np.testing.assert_allclose(got[real], ref[real], atol=1e-5, rtol=0)
  assert decode._cache_size() == 2  # prefill shape + step shape: cache_index is traced


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
