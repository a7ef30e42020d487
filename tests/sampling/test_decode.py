"""`sampling.decode` helpers the sampler tests reach only indirectly: the RoPE table, key blocks, the
cache's storage dtype and the LM-head copy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.models import tiny_llama3
from simko_jax.models.rope import inv_frequencies, rope_cos_sin
from simko_jax.sampling.decode import (key_block, lm_head_weight, prefill, rope_table, split_layer_params,
                                       storage_dtype)
from tests.sampling.helpers import left_padded, make_model


def test_rope_table_rows_equal_per_position_cos_sin():
  """The decode loop gathers table rows instead of evaluating sin/cos: the values must be the model's."""
  cfg = tiny_llama3()  # llama3 frequency scaling: the table must apply it too
  s = 40
  cos_t, sin_t = (np.asarray(t) for t in rope_table(cfg, s))
  assert cos_t.shape == sin_t.shape == (s, cfg.head_dim)
  positions = np.array([[0, 5, 39], [17, 17, 2]], np.int32)
  cos, sin = rope_cos_sin(positions, inv_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling))
  np.testing.assert_array_equal(cos_t[positions], np.asarray(cos))
  np.testing.assert_array_equal(sin_t[positions], np.asarray(sin))


@pytest.mark.parametrize("cache_len,blk", [(32, 32), (192, 64), (200, 100), (1024, 64), (4096, 128)])
def test_key_block_divides_the_cache(cache_len, blk):
  assert key_block(cache_len) == blk and cache_len % blk == 0


def test_bfloat16_cache_holds_bfloat16_values_in_float32_on_cpu():
  """On CPU a bf16 cache is stored as float32 (XLA:CPU widens bf16 slot writes to whole blocks); the
  stored values must still be the bf16-rounded keys/values, exactly."""
  model = make_model(tiny_llama3(dtype=jnp.bfloat16), seed=0)
  cpu = jax.default_backend() == "cpu"
  assert storage_dtype(jnp.bfloat16) == (jnp.float32 if cpu else jnp.bfloat16)
  assert storage_dtype(jnp.float32) == jnp.float32
  tokens, mask = left_padded(model.cfg.vocab_size, (6, 3), 6, seed=1)
  positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
  cache = jax.jit(lambda t, p, m: prefill(model, split_layer_params(model), t, p, m, rope_table(model.cfg, 64),
                                          cache_len=64))(tokens, positions, mask)
  for block in jax.tree.leaves(cache):
    assert block.dtype == storage_dtype(jnp.bfloat16)
    values = np.asarray(block, np.float32)
    np.testing.assert_array_equal(values, np.asarray(jnp.asarray(values).astype(jnp.bfloat16), np.float32))
  assert np.abs(np.asarray(cache["k"][0][0], np.float32)).max() > 0


@pytest.mark.parametrize("tied", [True, False])
def test_lm_head_weight_is_the_unembedding(tied):
  model = make_model(tiny_llama3(tie_word_embeddings=tied), seed=2)
  w = lm_head_weight(model)
  assert w.shape == (model.cfg.hidden_size, model.cfg.vocab_size)
  np.testing.assert_array_equal(np.asarray(w), np.asarray(model.unembedding()))


def test_one_key_block_where_blocks_are_not_skipped(monkeypatch):
  """GPU (`skip_blocks_with_cond` False): every block would be computed anyway, so the cache is one block."""
  from simko_jax.sampling import decode
  monkeypatch.setattr(decode, "skip_blocks_with_cond", lambda: False)
  assert [key_block(s) for s in (32, 192, 4096)] == [32, 192, 4096]
  monkeypatch.setattr(decode, "skip_blocks_with_cond", lambda: True)
  assert [key_block(s) for s in (32, 192, 4096)] == [32, 64, 128]
