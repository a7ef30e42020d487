"""Concentration analysis: `teacher_forced_concentration` against a numpy transcription on the same
samples (several forward batches with a padded last chunk, so the weighting is exercised)."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from simko_jax.eval.concentration import sample_prompts, teacher_forced_concentration
from tests.eval.helpers import byte_tokenizer, tiny_model, toy_examples


def _numpy_reference(model, outputs, temperature):
  """Per-response means of log p(rank r) / log p(sampled); per-token rank probs; real rows only."""
  graphdef, state = nnx.split(model)
  fwd = jax.jit(lambda s, t, m: nnx.merge(graphdef, s)(t, attention_mask_BxT=m))
  resp_lambda, resp_sample, token_probs = [], [], []
  for out, real in outputs:
    n_new = out.response_mask.shape[1]
    logits = np.asarray(fwd(state, out.tokens, out.attention_mask), np.float64)
    z = logits[:, -n_new - 1:-1] / temperature
    zmax = z.max(-1, keepdims=True)
    logp = z - zmax - np.log(np.exp(z - zmax).sum(-1, keepdims=True))
    top = -np.sort(-logp, axis=-1)[..., :5]
    sampled = np.take_along_axis(logp, np.asarray(out.tokens)[:, -n_new:, None], -1)[..., 0]
    rmask = np.asarray(out.response_mask).astype(bool)
    for b in range(real):
      if rmask[b].any():
        resp_lambda.append(top[b, rmask[b], :3].mean(0))
        resp_sample.append(sampled[b, rmask[b]].mean())
      token_probs.extend(np.exp(top[b, rmask[b]]))
  ref = {f"lambda_{r + 1}": np.mean([x[r] for x in resp_lambda]) for r in range(3)}
  ref["lambda_sample"] = np.mean(resp_sample)
  ref.update({f"rank{r + 1}_prob": np.mean([p[r] for p in token_probs]) for r in range(5)})
  return ref, len(resp_lambda)


def test_concentration_matches_numpy():
  model, tok = tiny_model(seed=3), byte_tokenizer()
  # 2 prompts x 2 samples per call over 3 prompts: calls of 2 and 1 (+1 padding copy) prompts.
  cc = ml_collections.ConfigDict(dict(num_prompts=3, num_samples=2, max_new_tokens=6, temperature=0.7,
                                      forward_rows=4))
  prompts = [ex.prompt for ex in toy_examples(3)]
  outputs = sample_prompts(model, tok, prompts, cc)
  assert [real for _, real in outputs] == [4, 2]
  assert outputs[0][0].tokens.shape == outputs[1][0].tokens.shape  # one compiled shape for all calls
  got = teacher_forced_concentration(model, outputs, cc.temperature)
  want, num_responses = _numpy_reference(model, outputs, cc.temperature)
  for key, value in want.items():
    assert got[key] == pytest.approx(value, abs=2e-5), key
  assert got["num_responses"] == num_responses == 6
  probs = [got[f"rank{r}_prob"] for r in range(1, 6)]
  assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
  assert got["lambda_1"] >= got["lambda_2"] >= got["lambda_3"]
