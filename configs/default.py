"""The embedded default: SimKO on SmolLM2-135M-Instruct, procedural arithmetic, one CPU, < 15 min.

Command (from the repository root):
  bash run.sh                                   # = python -m simko_jax.main --config configs/default.py
Smoke mode (two tiny steps):  --config.runlocal=True
Overrides: any field, e.g. --config.algo.alpha=0.05 --config.train.steps=40

Task: "What is a + b?" with a, b in [1, 9] (`data.task_difficulty=1`, `data.answer_format="plain"`),
checked by the last number of a *finished* response (`rewards.truncated_is_wrong`). Rollouts at
temperature 1.0 (the paper's), evaluation at 0.6 / top-p 0.95 (the paper's protocol) on 16 held-out
problems x 8 samples before and after training. README records the measured run.
"""

from simko_jax.config import default_config


def get_config():
  c = default_config()
  c.out_dir = "runs/default_simko"
  c.model.checkpoint = "smollm2"
  c.data.task = "arith"
  c.data.task_difficulty = 1
  c.data.answer_format = "plain"
  c.data.max_prompt_len = 64
  c.data.prompt_bucket = 16
  c.rollout.prompts_per_step = 4
  c.rollout.group_size = 8
  c.rollout.max_new_tokens = 48
  c.rollout.temperature = 1.0
  c.rewards.truncated_is_wrong = True
  c.algo.method = "simko"
  c.algo.mini_batch_prompts = 4
  c.algo.micro_batch_size = 16
  c.algo.loss_chunk_size = 256
  c.optim.learning_rate = 1e-5
  c.train.steps = 12
  c.checkpoint.every = 4
  c.eval.num_problems = 16
  c.eval.num_samples = 8
  c.eval.temperature = 0.6          # the paper's evaluation protocol
  c.eval.top_p = 0.95
  c.eval.max_new_tokens = 48
  return c
