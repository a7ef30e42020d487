"""Seed s of the vmapped study loop is the library's unbatched RL run of seed s (same key).

Checked against `simko_jax.train.loop.iteration` on a `Run` built by `experiments.common.Bench` (the
path every earlier study used): sampled tokens and rewards identical, metrics and parameters equal to
float32 rounding, over 2 RL steps of 2 seeds. A small random model and a toy reward (response length
parity) keep it fast and give non-zero advantages without a trained policy.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax
import numpy as np
import pytest
from flax import nnx

from experiments import common, study, task, vmapped
from simko_jax.models.transformer import Transformer
from simko_jax.train import loop


class ParityScorer:
  def score(self, batch):
    return [float(len(text) % 2) for text, _, _ in batch]

  def close(self):
    pass


@pytest.fixture(scope="module")
def setup():
  cfg = study.load_config(os.path.join(study.ROOT, "configs/experiments/decisive.py"), quick=True)
  cfg.model.update(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
  cfg.rl.rollout.update(prompts_per_step=4, group_size=4, max_new_tokens=8)
  cfg.rl.algo.update(mini_batch_prompts=2, micro_batch_size=8)
  cfg.rl.optim.learning_rate = 1e-2   # large, so two steps move the params visibly
  cfg.rl.rewards.truncated_is_wrong = False   # a random model never stops: score every response
  model = Transformer(common.model_config(cfg.model), rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  bench = common.Bench(cfg, graphdef, params)
  bench.scorer = ParityScorer()
  train_indices, _ = task.clean_split(task.task_config(cfg.task), 8)
  bench.train_examples = [task.example(i, task.task_config(cfg.task)) for i in train_indices]
  return cfg, bench


@pytest.mark.parametrize("method", ["grpo", "simko"])
def test_vmapped_seed_equals_library_iteration(setup, method):
  cfg, bench = setup
  seeds, steps = [3, 5], 2
  rc = common.rl_config(cfg, dict(cfg.methods[method]), seeds[0])
  trainer = vmapped.VmappedTrainer(rc, bench.graphdef, bench.sampler, bench.tokenizer, bench.scorer,
                                   bench.train_examples)
  runs = trainer.start(bench.warm_params, seeds)
  got = [trainer.iteration(runs) for _ in range(steps)]
  for s, seed in enumerate(seeds):
    run = bench.build_run(common.rl_config(cfg, dict(cfg.methods[method]), seed))
    for step in range(steps):
      want = loop.iteration(run, None)
      run.step += 1
      assert 0 < want["reward_mean"] < 1   # non-trivial advantages
      for k in ("reward_mean", "response_length", "truncated_fraction", "groups_all_equal"):
        assert got[step][s][k] == want[k], (seed, step, k)
      for k in ("loss", "grad_norm", "lambda_2", "rank1_prob", "ppo_kl"):
        np.testing.assert_allclose(got[step][s][k], want[k], rtol=2e-4, atol=1e-6,
                                   err_msg=f"seed {seed} step {step} {k}")
    # Float32 rounding of batched vs unbatched matmuls (~1e-7 relative in the gradients) reaches the
    # params through Adam's g / sqrt(v), which can turn it into a visible difference for an entry
    # whose gradient is near zero; so the check is on the whole update, leaf by leaf: the two runs'
    # parameter changes agree to 1e-3 of their size (and the change is not tiny).
    mine = jax.tree.leaves(vmapped.unstack(runs.params_S, s))
    for a, b, w in zip(mine, jax.tree.leaves(run.params), jax.tree.leaves(bench.warm_params)):
      a, b, w = (np.asarray(x, np.float64) for x in (a, b, w))
      assert np.linalg.norm(b - w) > 1e-3 * np.linalg.norm(w)
      assert np.linalg.norm(a - b) < 1e-3 * np.linalg.norm(b - w), (seed, a.shape)
