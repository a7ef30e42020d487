"""`models.inference` (prefill + one-token steps == the full forward) and what the sampler tests reach only
indirectly: the RoPE table, key blocks, the cache's storage dtype and the LM-head copy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax.models import kv_cache, tiny_gemma2, tiny_gemma3, tiny_llama3, tiny_qwen2, tiny_qwen3
from simko_jax.models.inference import decode_step, lm_head_weight, prefill, rope_table, unstack_layers
from simko_jax.models.kv_cache import key_block, storage_dtype
from simko_jax.models.rope import inv_frequencies, rope_cos_sin
from tests.sampling.helpers import full_forward_fn, left_padded, make_model


@pytest.mark.parametrize("make_cfg", [tiny_llama3, tiny_qwen2, tiny_qwen3, tiny_gemma2, tiny_gemma3])
def test_prefill_and_steps_match_forward(make_cfg):
  """Prefill 5 prompt columns, then feed the last prompt token and 4 new ones one at a time: every
  step's logits equal the full forward's at that position (left-padded rows, a 2-block cache whose
  second block is skipped). Gemma: 10 tokens against a sliding window of 4."""
  model = make_model(make_cfg(), seed=1)
  cfg = model.cfg
  prompt, pmask = left_padded(cfg.vocab_size, (6, 4, 2), 6, seed=1)
  new = np.random.default_rng(2).integers(3, cfg.vocab_size, (3, 4)).astype(np.int32)
  tokens = np.concatenate([prompt, new], axis=1)
  mask = np.concatenate([pmask, np.ones_like(new)], axis=1)
  ref = full_forward_fn(model)(tokens, mask)
  s = 128
  assert s // key_block(s) == 2
  positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
  kv_mask = np.zeros((3, s), np.int32)
  kv_mask[:, :tokens.shape[1]] = mask

  @jax.jit
  def run(tokens, positions, kv_mask):
    layers, rope = unstack_layers(model), rope_table(cfg, s)
    cache = prefill(model, layers, tokens[:, :5], positions[:, :5], kv_mask[:, :5], rope, cache_len=s)
    logits = []
    for i in range(5, tokens.shape[1]):
      step_logits, cache = decode_step(model, layers, tokens[:, i], positions[:, i], cache, jnp.int32(i),
                                       kv_mask, rope, first_slot=5)
      logits.append(step_logits)
    return jnp.stack(logits, axis=1)

  got = np.asarray(run(tokens, positions, kv_mask))
  np.testing.assert_allclose(got, ref[:, 5:], atol=1e-5, rtol=0)


def test_rope_table_rows_equal_per_position_cos_sin():
  """The decode loop gathers table rows instead of evaluating sin/cos: the values must be the model's."""
  cfg = tiny_llama3()  # llama3 frequency scaling: the table must apply it too
  s = 40
  cos_t, sin_t = (np.asarray(t) for t in rope_table(cfg, s))
  assert cos_t.shape == sin_t.shape == (1, s, cfg.head_dim)
  positions = np.array([[0, 5, 39], [17, 17, 2]], np.int32)
  cos, sin = rope_cos_sin(positions, inv_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling))
  np.testing.assert_array_equal(cos_t[0][positions], np.asarray(cos))
  np.testing.assert_array_equal(sin_t[0][positions], np.asarray(sin))


def test_rope_table_has_a_row_per_layer_kind():
  """Gemma 3: sliding layers (kind 1) use the local base, global layers (kind 0) the global base with
  linear scaling (positions / factor)."""
  cfg = tiny_gemma3()
  cos_t, _ = (np.asarray(t) for t in rope_table(cfg, 16))
  assert cos_t.shape == (2, 16, cfg.head_dim)
  positions = np.arange(16, dtype=np.int32)[None]
  local, _ = rope_cos_sin(positions, inv_frequencies(cfg.head_dim, 100.0))
  glob, _ = rope_cos_sin(positions, inv_frequencies(cfg.head_dim, cfg.rope_theta) / 2.0)
  np.testing.assert_array_equal(cos_t[1], np.asarray(local)[0])
  np.testing.assert_allclose(cos_t[0], np.asarray(glob)[0], atol=1e-6)


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
  cache = jax.jit(lambda t, p, m: prefill(model, unstack_layers(model), t, p, m, rope_table(model.cfg, 64),
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
  monkeypatch.setattr(kv_cache, "skip_blocks_with_cond", lambda: False)
  assert [key_block(s) for s in (32, 192, 4096)] == [32, 192, 4096]
  monkeypatch.setattr(kv_cache, "skip_blocks_with_cond", lambda: True)
  assert [key_block(s) for s in (32, 192, 4096)] == [32, 64, 128]
