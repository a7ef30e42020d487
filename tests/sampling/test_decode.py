"""`sampling.decode` helpers the sampler tests reach only indirectly: the RoPE table and key blocks."""

import numpy as np
import pytest

from simko_jax.models import tiny_llama3
from simko_jax.models.rope import inv_frequencies, rope_cos_sin
from simko_jax.sampling.decode import key_block, rope_table


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
