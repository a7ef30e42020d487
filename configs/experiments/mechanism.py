"""Study 1 (mechanism): GRPO vs SimKO vs PSR vs NSR from one supervised warm start, on Countdown.

Command:  python experiments/mechanism.py            (writes experiments/results/mechanism/)
Smoke:    python experiments/mechanism.py --quick    (tiny sizes, same code paths, ~2 min)

`model`, `task`, `sft` fix the warm start (cached by their hash); `rl` is a library config
(`simko_jax.config.default_config()` fields, validated), shared by every method; `methods` maps a run
name to the `algo` fields that select it; `eval` is the held-out pass@k protocol and the probe set of
the concentration metrics.
"""

import ml_collections

from simko_jax.config import default_config


def get_config():
  c = ml_collections.ConfigDict()
  c.name = "mechanism"
  c.seeds = (0, 1, 2)

  c.task = ml_collections.ConfigDict(dict(seed=0, num_numbers=3, max_number=9))
  c.model = ml_collections.ConfigDict(dict(
      vocab_size=128, hidden_size=128, num_layers=3, num_heads=4, intermediate_size=384,
      max_positions=128, init_seed=0))
  c.sft = ml_collections.ConfigDict(dict(
      steps=400, batch_size=64, seq_len=48, learning_rate=3e-3, warmup_steps=50, weight_decay=0.0,
      seed=0, log_every=100))

  rl = default_config()
  rl.out_dir = ""                  # unused: runs write nothing but their metrics
  rl.model.checkpoint = "random"   # unused: the policy is the warm start
  rl.data.task = "countdown"       # the compact prompts of experiments/task.py
  rl.data.max_prompt_len = 32
  rl.data.prompt_bucket = 32
  rl.data.num_epochs = 100
  rl.rollout.prompts_per_step = 16
  rl.rollout.group_size = 8
  rl.rollout.max_new_tokens = 20
  rl.rollout.temperature = 1.0
  rl.rewards.truncated_is_wrong = True
  rl.algo.mini_batch_prompts = 8   # 2 optimizer steps per RL step (the second one off-policy, clipped)
  rl.algo.micro_batch_size = 64
  rl.algo.loss_chunk_size = 640
  rl.optim.learning_rate = 2e-4
  rl.train.steps = 40
  rl.eval.enabled = False          # the study evaluates with its own protocol below
  c.rl = rl

  simko = dict(method="simko", top_k=3, alpha=0.01, lam=1.1, tau=0.8)   # the released defaults
  c.methods = ml_collections.ConfigDict(dict(
      grpo=dict(method="grpo"), simko=simko, psr=dict(method="psr"), nsr=dict(method="nsr")))

  c.eval = ml_collections.ConfigDict(dict(
      num_problems=64, num_samples=256, temperature=0.6, top_p=0.95, max_new_tokens=20,
      batch_problems=8, seed=0, probe_problems=32, probe_samples=8, probe_temperature=1.0,
      probe_every=4))
  return c


def quick(c):
  """--quick: the same code paths at smoke-test sizes."""
  c.seeds = (0,)
  c.sft.steps = 20
  c.sft.log_every = 10
  c.rl.train.steps = 2
  c.eval.num_problems = 8
  c.eval.num_samples = 16
  c.eval.probe_problems = 4
  c.eval.probe_samples = 4
  c.eval.probe_every = 1
  return c
