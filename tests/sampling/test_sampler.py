"""Sampler vs full-forward references: greedy parity, trainer log-probs, seeds, EOS, recompilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from simko_jax.models import tiny_gemma2, tiny_gemma3, tiny_llama3, tiny_qwen2, tiny_qwen3
from simko_jax.sampling import FINISH_LENGTH, FINISH_STOP, Sampler
from tests.sampling.helpers import full_forward_fn, left_padded, make_model, trainer_logprobs

LENGTHS, P = (7, 4, 1), 7


@pytest.fixture(scope="module")
def llama():
  model = make_model(tiny_llama3(), seed=3)
  sampler, state = Sampler.from_model(model, prompt_bucket=8, gen_bucket=16)
  return model, sampler, state, full_forward_fn(model)


@pytest.mark.parametrize("make_cfg", [tiny_llama3, tiny_qwen2, tiny_qwen3, tiny_gemma2, tiny_gemma3])
def test_greedy_equals_stepwise_argmax_of_full_forward(make_cfg):
  model = make_model(make_cfg(), seed=1)
  fwd = full_forward_fn(model)
  sampler, state = Sampler.from_model(model, prompt_bucket=8, gen_bucket=16)
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=1)
  n_new = 9
  out = sampler.sample(state, prompt, pmask, jax.random.key(0), n=2, max_new_tokens=n_new, greedy=True,
                       stop_ids=())
  # Reference: grow each sequence one argmax at a time with the full forward. Future columns are
  # right-padding (mask 0) that causal attention never lets earlier columns see, so one shape suffices.
  tokens = np.concatenate([prompt, np.zeros((3, n_new), np.int32)], axis=1)
  mask = np.concatenate([pmask, np.zeros((3, n_new), np.int32)], axis=1)
  for i in range(n_new):
    tokens[:, P + i] = fwd(tokens, mask)[:, P - 1 + i].argmax(-1)
    mask[:, P + i] = 1
  np.testing.assert_array_equal(np.asarray(out.tokens), np.repeat(tokens, 2, axis=0))
  assert np.asarray(out.response_mask).all() and (np.asarray(out.finish_reason) == FINISH_LENGTH).all()
  assert int(out.num_steps) == n_new


def test_greedy_and_logprobs_across_key_blocks(llama):
  """A 192-slot cache holds keys in three 64-slot blocks (`kv_cache.key_block`); decoding from slot 63 to
  132 writes into all three and attends across them."""
  model, _, state, fwd = llama
  sampler = Sampler(nnx.split(model)[0], prompt_bucket=64, gen_bucket=64)
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=4)
  n_new = 70
  greedy = sampler.sample(state, prompt, pmask, jax.random.key(0), max_new_tokens=n_new, greedy=True,
                          stop_ids=())
  tokens = np.concatenate([prompt, np.zeros((3, n_new), np.int32)], axis=1)
  mask = np.concatenate([pmask, np.ones((3, n_new), np.int32)], axis=1)
  logits = fwd(np.asarray(greedy.tokens), mask)
  tokens[:, P:] = np.asarray(greedy.tokens)[:, P:]
  # Every greedy step checked at once: each sampled token is the argmax of the full forward over the
  # sampled prefix (causal, so one forward over the whole sequence equals a 70-step greedy loop).
  np.testing.assert_array_equal(np.asarray(logits)[:, P - 1:-1].argmax(-1), tokens[:, P:])
  out = sampler.sample(state, prompt, pmask, jax.random.key(3), n=2, max_new_tokens=n_new, stop_ids=())
  ref = trainer_logprobs(fwd, out.tokens, out.attention_mask, P, 1.0)
  np.testing.assert_allclose(np.asarray(out.logprobs), ref, atol=1e-5, rtol=0)


def test_long_prompt_blocks_are_kept_while_decoding_past_them(llama):
  """Prompts bucketed to 128 slots: decoding starts at slot 127, so the first 64-slot key/value block
  holds only prompt keys and is never written again (`kv_cache.write_slot` skips it); greedy tokens and
  log-probs must still match the full forward, which reads those prompt keys."""
  model, _, state, fwd = llama
  sampler = Sampler(nnx.split(model)[0], prompt_bucket=128, gen_bucket=64)
  p = 100
  prompt, pmask = left_padded(model.cfg.vocab_size, (100, 90, 70), p, seed=5)
  n_new = 20
  out = sampler.sample(state, prompt, pmask, jax.random.key(0), max_new_tokens=n_new, greedy=True,
                       stop_ids=())
  logits = np.asarray(fwd(np.asarray(out.tokens), np.asarray(out.attention_mask)))
  np.testing.assert_array_equal(logits[:, p - 1:-1].argmax(-1), np.asarray(out.tokens)[:, p:])
  ref = trainer_logprobs(fwd, out.tokens, out.attention_mask, p, 1.0)
  np.testing.assert_allclose(np.asarray(out.logprobs), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature,top_p,top_k", [(0.7, 1.0, 0), (1.3, 0.9, 0), (1.0, 0.8, 20)])
def test_logprobs_equal_trainer_recompute_fp32(llama, temperature, top_p, top_k):
  model, sampler, state, fwd = llama
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=2)
  out = sampler.sample(state, prompt, pmask, jax.random.key(1), n=3, max_new_tokens=10,
                       temperature=temperature, top_p=top_p, top_k=top_k, stop_ids=(5, 6, 7, 8, 9))
  ref = trainer_logprobs(fwd, out.tokens, out.attention_mask, P, temperature)
  rmask = np.asarray(out.response_mask).astype(bool)
  np.testing.assert_allclose(np.asarray(out.logprobs)[rmask], ref[rmask], atol=1e-5, rtol=0)
  assert (np.asarray(out.logprobs)[~rmask] == 0).all()
  want_pos = pmask.sum(-1).repeat(3)[:, None] + np.arange(10)
  np.testing.assert_array_equal(np.asarray(out.positions)[:, P:][rmask], want_pos[rmask])


@pytest.mark.parametrize("make_cfg", [tiny_gemma2, tiny_gemma3])
def test_gemma_logprobs_equal_the_trainers(make_cfg):
  """Gemma (sliding window 4, soft-caps): the sampler's log-probs of 12 sampled tokens after prompts of
  up to 7 equal the trainer's own recompute (`train.step.jit_logprobs`: chunked LM head with the
  final-logit soft-cap) and the full forward's within 1e-5."""
  from simko_jax.parallel import make_mesh
  from simko_jax.train.step import LossConfig, jit_logprobs
  model = make_model(make_cfg(), seed=4)
  sampler, state = Sampler.from_model(model, prompt_bucket=8, gen_bucket=16)
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=6)
  out = sampler.sample(state, prompt, pmask, jax.random.key(2), n=2, max_new_tokens=12, temperature=0.8,
                       stop_ids=())
  ref = trainer_logprobs(full_forward_fn(model), out.tokens, out.attention_mask, P, 0.8)
  np.testing.assert_allclose(np.asarray(out.logprobs), ref, atol=1e-5, rtol=0)
  graphdef, params = nnx.split(model, nnx.Param)
  logp = jit_logprobs(graphdef, LossConfig(temperature=0.8, chunk_size=8), None,
                      make_mesh(1, 1, 1, devices=jax.devices()[:1]))
  r = out.tokens.shape[1] - P
  trainer = np.asarray(logp(params, out.tokens, out.attention_mask, out.positions, r))
  np.testing.assert_allclose(np.asarray(out.logprobs), trainer, atol=1e-5, rtol=0)


def test_logprob_gap_bf16():
  """bf16 compute: sampler (cached, one token at a time) vs trainer (full forward) log-prob gap.

  Params are scaled up so the tiny random model has peaked (not near-uniform) next-token distributions.
  """
  model = make_model(tiny_llama3(dtype=jnp.bfloat16), seed=3)
  sampler, state = Sampler.from_model(model, prompt_bucket=8, gen_bucket=16)
  state = jax.tree.map(lambda x: x * 5.0, state)
  nnx.update(model, state)
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=2)
  out = sampler.sample(state, prompt, pmask, jax.random.key(1), n=4, max_new_tokens=16, stop_ids=())
  ref = trainer_logprobs(full_forward_fn(model), out.tokens, out.attention_mask, P, 1.0)
  gap = np.abs(np.asarray(out.logprobs) - ref)
  print(f"\nbf16 sampler-vs-trainer logprob gap: max {gap.max():.3e} mean {gap.mean():.3e} "
        f"(mean sampled logprob {np.asarray(out.logprobs).mean():.2f})")
  # Measured: CPU mean 0.018-0.026 over keys 0-5, max 0.13-0.52 (the max is one token's tail: it moves
  # with the drawn tokens, 0.42 for key 2 before per-row keys too); H200 (cuBLAS bf16, other
  # accumulation order) max 0.563 / mean 0.050. The mean bounds the systematic mismatch everywhere; the
  # max is bounded loosely on CPU only.
  assert gap.mean() < 0.1
  if jax.default_backend() == "cpu":
    assert gap.max() < 0.75


def test_seeded_reproducible_and_group_samples_differ(llama):
  model, sampler, state, _ = llama
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=4)
  run = lambda seed: np.asarray(sampler.sample(state, prompt, pmask, jax.random.key(seed), n=4,
                                               max_new_tokens=12, stop_ids=()).tokens)
  a, b, c = run(7), run(7), run(8)
  np.testing.assert_array_equal(a, b)
  assert (a != c).any()
  for g in range(3):  # the n samples of one prompt share the prompt but not the response
    group = a[4 * g:4 * g + 4]
    assert (group[:, :P] == group[0, :P]).all()
    assert len({tuple(r[P:]) for r in group}) == 4


@pytest.mark.parametrize("greedy", [True, False])
def test_stop_tokens_masks_finish_reasons_and_early_exit(llama, greedy):
  model, sampler, state, _ = llama
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=5)
  compiled_before = sampler.num_compilations
  run = lambda stops: sampler.sample(state, prompt, pmask, jax.random.key(3), n=2, max_new_tokens=20,
                                     greedy=greedy, stop_ids=tuple(stops))
  free_tok = np.asarray(run(()).response_tokens)
  # Stop set: the token each row emits at step 3, except the last row (which must run to the limit).
  stop_set = {int(t) for t in free_tok[:-1, 3]} - set(free_tok[-1].tolist())
  assert stop_set
  out = run(stop_set)
  hits = np.isin(free_tok, list(stop_set))
  first = np.where(hits.any(-1), hits.argmax(-1), -1)
  tok, rmask = np.asarray(out.response_tokens), np.asarray(out.response_mask)
  for r in range(len(tok)):
    length = first[r] + 1 if first[r] >= 0 else 20
    np.testing.assert_array_equal(rmask[r], np.arange(20) < length)
    np.testing.assert_array_equal(tok[r, :length], free_tok[r, :length])  # same draws before the stop
    assert (tok[r, length:] == sampler.pad_id).all() and (np.asarray(out.logprobs)[r, length:] == 0).all()
    assert int(out.finish_reason[r]) == (FINISH_STOP if first[r] >= 0 else FINISH_LENGTH)
    assert int(out.response_lengths[r]) == length
  assert int(out.num_steps) == 20
  # Early exit: once every row has emitted one of the step-5 tokens, the loop stops.
  everyone = {int(t) for t in free_tok[:, 5]}
  first_all = np.isin(free_tok, list(everyone)).argmax(-1)
  early = run(everyone)
  assert int(early.num_steps) == first_all.max() + 1 <= 6
  assert (np.asarray(early.finish_reason) == FINISH_STOP).all()
  assert sampler.num_compilations - compiled_before <= 1  # stop sets are traced values: no recompile


def test_same_bucket_does_not_recompile():
  model = make_model(tiny_llama3(), seed=0)
  sampler, state = Sampler.from_model(model, prompt_bucket=8, gen_bucket=16)
  vocab = model.cfg.vocab_size
  for i, (p, n_new, temp, top_p) in enumerate([(5, 10, 1.0, 0.9), (8, 16, 0.5, 0.5), (3, 12, 2.0, 0.95)]):
    prompt, pmask = left_padded(vocab, (p, 2), p, seed=i)
    state_i = jax.tree.map(lambda x: x * (1 + i), state)  # new param values, same shapes
    out = sampler.sample(state_i, prompt, pmask, jax.random.key(i), n=2, max_new_tokens=n_new,
                         temperature=temp, top_p=top_p)
    assert out.tokens.shape == (4, p + n_new)
  assert sampler.num_compilations == 1 and sampler._jitted._cache_size() == 1
  prompt, pmask = left_padded(vocab, (9, 2), 9)  # next prompt bucket -> exactly one more program
  sampler.sample(state, prompt, pmask, jax.random.key(0), n=2, max_new_tokens=4, top_p=0.9)
  assert sampler.num_compilations == 2


def test_rejects_right_padding(llama):
  model, sampler, state, _ = llama
  prompt, pmask = left_padded(model.cfg.vocab_size, (3, 2), 3)
  with pytest.raises(ValueError, match="left-padded"):
    sampler.sample(state, prompt[:, ::-1], pmask[:, ::-1], jax.random.key(0), max_new_tokens=2)


def test_blocks_computed_and_masked_equal_blocks_skipped(llama, monkeypatch):
  """The GPU decode layout (`kv_cache.skip_blocks_with_cond` False: the cache is one block, computed and
  masked whole), and three blocks computed and masked, give the tokens and log-probs of the CPU layout
  (three 64-slot blocks, the ones past the current slot skipped by a `lax.cond`)."""
  from simko_jax.models import kv_cache
  model, _, state, _ = llama
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=6)
  blocks_per_run = []  # key blocks per layer under each run's setting

  def run():
    sampler = Sampler(nnx.split(model)[0], prompt_bucket=64, gen_bucket=64)  # S = 192
    out = sampler.sample(state, prompt, pmask, jax.random.key(2), n=2, max_new_tokens=40, stop_ids=())
    blocks_per_run.append(192 // kv_cache.key_block(192))
    return out

  monkeypatch.setattr(kv_cache, "skip_blocks_with_cond", lambda: True)
  skipped = run()
  monkeypatch.setattr(kv_cache, "skip_blocks_with_cond", lambda: False)
  one_block = run()
  monkeypatch.setattr(kv_cache, "max_key_blocks", lambda: kv_cache.MAX_KEY_BLOCKS)
  masked = run()
  assert blocks_per_run == [3, 1, 3]
  for out in (one_block, masked):
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(skipped.tokens))
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(skipped.logprobs), atol=1e-5, rtol=0)


def test_response_depends_on_its_pair_not_its_row(llama):
  """Row keys are fold_in(fold_in(fold_in(key, prompt), sample), token): sample j of prompt b is the
  same response at row 2b + j (n = 2) and at row 4b + j (n = 4), and its first token is the documented
  draw from the full forward's logits."""
  model, sampler, state, fwd = llama
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=7)
  key = jax.random.key(11)
  two = sampler.sample(state, prompt, pmask, key, n=2, max_new_tokens=12, stop_ids=())
  four = sampler.sample(state, prompt, pmask, key, n=4, max_new_tokens=12, stop_ids=())
  np.testing.assert_array_equal(np.asarray(four.tokens).reshape(3, 4, -1)[:, :2],
                                np.asarray(two.tokens).reshape(3, 2, -1))
  np.testing.assert_allclose(np.asarray(four.logprobs).reshape(3, 4, -1)[:, :2],
                             np.asarray(two.logprobs).reshape(3, 2, -1), atol=1e-5, rtol=0)
  logits_PxV = fwd(prompt, pmask)[:, -1]  # V = 256 <= 2 * CHUNK: one jax.random.categorical per row
  for b in range(3):
    for j in range(4):
      k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, b), j), 0)
      assert int(four.response_tokens[4 * b + j, 0]) == int(jax.random.categorical(k, logits_PxV[b]))


def test_max_new_per_sample_cuts_each_row_at_its_budget(llama):
  model, sampler, state, _ = llama
  prompt, pmask = left_padded(model.cfg.vocab_size, LENGTHS, P, seed=8)
  kw = dict(n=2, max_new_tokens=14, stop_ids=())
  free = sampler.sample(state, prompt, pmask, jax.random.key(2), **kw)
  budget = np.array([[3, 9], [1, 5], [7, 2]])
  compiled = sampler.num_compilations
  out = sampler.sample(state, prompt, pmask, jax.random.key(2), max_new_per_sample=budget, **kw)
  assert sampler.num_compilations == compiled  # a traced value: same program as without budgets
  lengths = budget.reshape(-1)
  np.testing.assert_array_equal(np.asarray(out.response_lengths), lengths)
  rmask = np.arange(14)[None] < lengths[:, None]
  np.testing.assert_array_equal(np.asarray(out.response_mask), rmask)
  np.testing.assert_array_equal(np.asarray(out.response_tokens)[rmask], np.asarray(free.response_tokens)[rmask])
  assert (np.asarray(out.response_tokens)[~rmask] == sampler.pad_id).all()
  assert (np.asarray(out.logprobs)[~rmask] == 0).all()
  assert (np.asarray(out.finish_reason) == FINISH_LENGTH).all() and int(out.num_steps) == 9
  for bad in (np.zeros((3, 2), int), np.full((3, 2), 15), np.ones((3, 1), int), budget * 1.0):
    with pytest.raises(ValueError, match="max_new_per_sample"):
      sampler.sample(state, prompt, pmask, jax.random.key(2), max_new_per_sample=bad, **kw)
