"""Sampling under the 8-device CPU mesh equals unsharded sampling (tokens exactly, log-probs ~1e-6)."""

import jax
import numpy as np
import pytest

from simko_jax.models import tiny_llama3
from simko_jax.parallel import make_mesh, shard_model
from simko_jax.sampling import Sampler
from tests.sampling.helpers import left_padded, make_model

KW = dict(n=2, max_new_tokens=8, temperature=1.0, top_k=0, top_p=1.0)


@pytest.fixture(scope="module")
def reference():
  model = make_model(tiny_llama3(), seed=2)
  sampler, state = Sampler.from_model(model, prompt_bucket=8, gen_bucket=8)
  prompt, pmask = left_padded(model.cfg.vocab_size, (6, 3, 1, 5), 6, seed=3)
  out = sampler.sample(state, prompt, pmask, jax.random.key(5), **KW)
  return prompt, pmask, out


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake CPU) devices")
@pytest.mark.parametrize("shape", [(2, 2, 2), (4, 1, 2)])
def test_sharded_equals_unsharded(reference, shape):
  prompt, pmask, want = reference
  mesh = make_mesh(*shape)
  model = shard_model(make_model(tiny_llama3(), seed=2), mesh)
  sampler, state = Sampler.from_model(model, mesh=mesh, prompt_bucket=8, gen_bucket=8)
  got = sampler.sample(state, prompt, pmask, jax.random.key(5), **KW)
  # The decode loop's per-device, per-layer cache [B*n/4, KVH/2, S, Dh] (rows over data x fsdp, kv heads
  # over tensor) is what the compiled program holds; the full [B*n, KVH, S, Dh] never exists.
  hlo = sampler.lower(state, prompt, pmask, jax.random.key(5), **KW).compile().as_text()
  assert "f32[2,1,16,16]" in hlo and "f32[8,2,16,16]" not in hlo
  np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(want.tokens))
  np.testing.assert_array_equal(np.asarray(got.response_mask), np.asarray(want.response_mask))
  np.testing.assert_allclose(np.asarray(got.logprobs), np.asarray(want.logprobs), atol=1e-5)
