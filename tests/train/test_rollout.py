"""Rollouts on the host side: group selection, metrics, and a verifier that must not hang the step."""

import time

import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from simko_jax.rewards.pool import VerifierPool
from simko_jax.sampling.sampler import FINISH_LENGTH, FINISH_STOP, SampleOutput
from simko_jax.train import rollout
from simko_jax.train.batch import advantages_of

G = 4


def scored(rewards, example_ids=None):
  n = len(rewards)
  return rollout.Scored(rewards=np.asarray(rewards, np.float32), truncated=np.zeros(n, bool),
                        response_lengths=np.arange(n, dtype=np.int32),
                        prompt_lengths=np.full(n, 5, np.int32),
                        example_ids=list(range(n // G)) if example_ids is None else example_ids)


def test_dynamic_sampling_keeps_informative_groups_first_and_pads():
  first = scored([1, 1, 1, 1, 0, 1, 0, 0])           # group 0 all equal, group 1 informative
  second = scored([0, 0, 0, 0, 1, 0, 0, 1], [10, 11])  # group 0 all equal, group 1 informative
  both = rollout.Scored.concat([first, second])
  ids, padded = rollout.select_groups(both, 2, G, dynamic_sampling=True)
  assert both.take_groups(ids, G).example_ids == [1, 11] and padded == 0
  np.testing.assert_array_equal(rollout.group_rows(ids, G), [4, 5, 6, 7, 12, 13, 14, 15])
  np.testing.assert_array_equal(both.take_groups(ids, G).response_lengths, [4, 5, 6, 7] * 2)
  ids, padded = rollout.select_groups(first, 2, G, dynamic_sampling=True)
  assert first.take_groups(ids, G).example_ids == [1, 0] and padded == 1
  ids, padded = rollout.select_groups(both, 2, G, dynamic_sampling=False)
  assert both.take_groups(ids, G).example_ids == [0, 1] and padded == 0


def advantages_reference(rewards_PxG, advantage, eps):
  """numpy transcription of the three estimators (GRPO: std with Bessel's correction, as verl)."""
  r = np.asarray(rewards_PxG, np.float64)
  if advantage == "signed":
    return np.where(r > 0.5, 1.0, -1.0)
  centred = r - r.mean(-1, keepdims=True)
  if advantage == "grpo_no_std":                        # Dr. GRPO: no division by the std
    return centred
  return centred / (r.std(-1, ddof=1, keepdims=True) + eps)


@pytest.mark.parametrize("advantage", ["grpo", "grpo_no_std", "signed"])
@pytest.mark.parametrize("eps", [1e-6, 0.5])
def test_advantages_match_numpy_exactly(advantage, eps):
  """Exact values, not signs: an un-normalised GRPO advantage or a dropped eps must fail."""
  rewards_PxG = np.array([[1, 0, 0, 0],                 # one right: std 0.5
                          [1, 1, 1, 1],                 # all equal: no signal (signed: all +1)
                          [0.25, 1, 0, 0.75],           # partial credit
                          [0, 0, 0, 0]], np.float32)
  adv_PxG = np.asarray(advantages_of(jnp.asarray(rewards_PxG.reshape(-1)), G, advantage, eps)).reshape(-1, G)
  expected_PxG = advantages_reference(rewards_PxG, advantage, eps)
  np.testing.assert_allclose(adv_PxG, expected_PxG, rtol=1e-6, atol=1e-7)
  if advantage != "signed":
    assert np.all(adv_PxG[[1, 3]] == 0)                 # all-equal groups: exactly 0


def test_rollout_metrics_of_the_chosen_rows():
  s = scored([1, 0, 0, 0, 1, 1, 1, 1])
  s.truncated[1] = True
  m = rollout.rollout_metrics(s, padded=1, group_size=G)
  assert m == {"reward_mean": 5 / 8, "accuracy": 5 / 8, "pass_at_group": 1.0, "response_length": 3.5,
               "truncated_fraction": 1 / 8, "groups_all_equal": 0.5, "groups_padded": 1}


HOSTILE = ["\\boxed{9^{9^{9^{9^{9}}}}}", "\\boxed{" + "\\frac{1}{" * 400 + "1" + "}" * 400 + "}",
           "\\boxed{(10^{10^{10}})!}", "x" * 1_000_000]


class StubSampler:
  """Returns fixed responses: row i's text is `texts[i]` (via StubTokenizer)."""

  def __init__(self, num_rows):
    self.num_rows = num_rows

  def sample(self, params, prompt_tokens, prompt_mask, key, *, n, max_new_tokens, **kw):
    rows = prompt_tokens.shape[0] * n
    resp = np.tile(np.arange(rows, dtype=np.int32)[:, None], (1, 2))
    finish = np.full(rows, FINISH_STOP, np.int32)
    finish[-1] = FINISH_LENGTH
    return SampleOutput(
        tokens=np.concatenate([np.repeat(prompt_tokens, n, 0), resp], 1),
        prompt_mask=np.repeat(prompt_mask, n, 0), response_mask=np.ones((rows, 2), np.int32),
        response_tokens=resp, logprobs=np.zeros((rows, 2), np.float32), finish_reason=finish,
        response_lengths=np.full(rows, 2, np.int32), num_steps=np.int32(2))


class StubTokenizer:
  def __init__(self, texts):
    self.texts = texts

  def decode(self, ids, skip_special_tokens=False):
    return self.texts[int(ids[0])]


def test_hostile_answers_cost_at_most_the_timeout_and_score_zero():
  texts = ["The answer is \\boxed{\\frac{1}{2}}.", *HOSTILE, "\\boxed{0.5}", "\\boxed{3}",
           "\\boxed{\\dfrac{1}{2}}"]
  assert len(texts) == 2 * G
  prompts = {"prompt_tokens": np.ones((2, 3), np.int32), "prompt_mask": np.ones((2, 3), np.int32),
             "ground_truths": ["\\frac12", "\\frac{1}{2}"], "data_sources": ["math", "math"],
             "example_ids": [0, 1]}
  cfg = ConfigDict(dict(group_size=G, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0))
  timeout = 3.0
  with VerifierPool(num_workers=2, timeout_s=timeout) as pool:
    pool.score([("\\boxed{1}", "1", "math")])          # workers warm
    start = time.perf_counter()
    _, g, _, reward_s = rollout.sample_and_score(StubSampler(2 * G), None, prompts, None, cfg,
                                                 StubTokenizer(texts), pool.score)
    elapsed = time.perf_counter() - start
  np.testing.assert_array_equal(g.rewards, [1, 0, 0, 0, 0, 1, 0, 1])
  assert 0 < reward_s <= elapsed
  # 4 hostile answers on 2 workers: at most 2 timeouts in sequence, plus slack for worker restarts.
  assert elapsed < 2 * timeout + 8, elapsed
  assert g.truncated[-1] and not g.truncated[0]


def test_truncated_responses_can_count_as_wrong():
  texts = ["\\boxed{3}"] * (2 * G)
  prompts = {"prompt_tokens": np.ones((2, 3), np.int32), "prompt_mask": np.ones((2, 3), np.int32),
             "ground_truths": ["3", "3"], "data_sources": ["math", "math"], "example_ids": [0, 1]}
  cfg = ConfigDict(dict(group_size=G, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0))
  score = lambda items: [1.0] * len(items)
  _, g, _, _ = rollout.sample_and_score(StubSampler(2 * G), None, prompts, None, cfg,
                                        StubTokenizer(texts), score, truncated_is_wrong=True)
  np.testing.assert_array_equal(g.rewards, [1] * 7 + [0])
  np.testing.assert_array_equal(g.prompt_lengths, [3] * 8)
  np.testing.assert_array_equal(g.response_lengths, [2] * 8)


# Three prompts with different answers and data sources; row i's text is PAIRED_TEXTS[i].
PAIRED_PROMPTS = {"prompt_tokens": np.ones((3, 3), np.int32), "prompt_mask": np.ones((3, 3), np.int32),
                  "ground_truths": ["3", "7", "12"], "data_sources": ["arith", "arith_plain", "arith"],
                  "example_ids": [20, 21, 22]}
PAIRED_TEXTS = ["\\boxed{3}", "7", "\\boxed{12}", "\\boxed{3}",        # prompt 0: arith, 3
                "so 7", "\\boxed{3}", "7 apples", "12",                 # prompt 1: arith_plain, 7
                "\\boxed{12}", "12", "\\boxed{7}", "\\boxed{12}"]       # prompt 2: arith, 12


def test_each_response_is_scored_against_its_own_prompt():
  """Row r is response r % G of prompt r // G and is scored with that prompt's truth and source."""
  from simko_jax.rewards import compute_reward
  cfg = ConfigDict(dict(group_size=G, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0))
  seen = []

  def score(items):
    seen.extend(items)
    return [compute_reward(*item) for item in items]

  _, g, _, _ = rollout.sample_and_score(StubSampler(3 * G), None, PAIRED_PROMPTS, None, cfg,
                                        StubTokenizer(PAIRED_TEXTS), score)
  expected = [1, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0, 1]
  np.testing.assert_array_equal(g.rewards, expected)
  assert seen == [(PAIRED_TEXTS[r], PAIRED_PROMPTS["ground_truths"][r // G],
                   PAIRED_PROMPTS["data_sources"][r // G]) for r in range(3 * G)]
  assert g.example_ids == [20, 21, 22]
  # The test can tell pairings apart: any other assignment of prompts to groups scores differently.
  for perm in ([0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
    other = [compute_reward(PAIRED_TEXTS[r], PAIRED_PROMPTS["ground_truths"][perm[r // G]],
                            PAIRED_PROMPTS["data_sources"][perm[r // G]]) for r in range(3 * G)]
    assert other != expected, perm
  # Advantages stay with their groups through selection (dynamic sampling reorders groups).
  ids, _ = rollout.select_groups(g, 3, G, dynamic_sampling=True)
  chosen = g.take_groups(ids, G)
  adv = np.asarray(advantages_of(jnp.asarray(chosen.rewards), G, "grpo", 1e-6)).reshape(-1, G)
  by_id = dict(zip(chosen.example_ids, adv))
  for p, example_id in enumerate(PAIRED_PROMPTS["example_ids"]):
    np.testing.assert_allclose(by_id[example_id],
                               advantages_reference([expected[p * G:(p + 1) * G]], "grpo", 1e-6)[0],
                               rtol=1e-6)


def test_split_prompts_keeps_rows_and_order():
  batch = {"prompt_tokens": np.arange(12).reshape(6, 2), "prompt_mask": np.ones((6, 2)),
           "ground_truths": list("abcdef"), "data_sources": ["s"] * 6, "example_ids": list(range(6))}
  chunks = rollout.split_prompts(batch, 4)
  assert [c["example_ids"] for c in chunks] == [[0, 1, 2, 3], [4, 5]]
  np.testing.assert_array_equal(np.concatenate([c["prompt_tokens"] for c in chunks]),
                                batch["prompt_tokens"])
  assert rollout.split_prompts(batch, 0) == [batch]
