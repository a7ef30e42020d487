"""A tiny randomly initialised model on the arithmetic task: the trainer's smoke/integration config.

Command:  python -m simko_jax.main --config configs/tiny_random.py      (~1 min on 2 CPU cores)
Nothing is learned in so few steps; it exercises every part of the loop (sampling, verifier pool,
advantages, micro-batched updates, checkpoints, logging, eval before/after).
"""

from simko_jax.config import default_config


def get_config():
  c = default_config()
  c.out_dir = "runs/tiny_random"
  c.model.checkpoint = "random"
  c.model.random_preset = "tiny_llama3"
  c.data.task = "arith"
  c.data.task_difficulty = 1
  c.data.max_prompt_len = 96
  c.data.prompt_bucket = 32
  c.rollout.prompts_per_step = 2
  c.rollout.group_size = 4
  c.rollout.max_new_tokens = 16
  c.algo.mini_batch_prompts = 1
  c.algo.micro_batch_size = 2
  c.algo.loss_chunk_size = 16
  c.optim.learning_rate = 1e-3
  c.train.steps = 3
  c.checkpoint.every = 2
  c.rewards.num_workers = 1
  c.eval.num_problems = 4
  c.eval.num_samples = 4
  c.eval.max_new_tokens = 16
  return c
