"""A quick CPU-sized evaluation: 10 GSM8K + 10 MATH500 problems, n=8, 256 new tokens, concentration on.

  python -m simko_jax.evaluate --config configs/eval_quick.py --checkpoint smollm2
"""

from configs.eval_default import get_config as _default


def get_config():
  c = _default()
  c.out_dir = "runs/eval_quick"
  c.benchmarks = "gsm8k,math500"
  c.num_problems = 10
  c.num_samples = 8
  c.num_samples_by_benchmark = ""  # n = 8 everywhere
  c.max_new_tokens = 256
  c.batch_problems = 2
  c.concentration.enabled = True
  c.concentration.num_prompts = 4
  c.concentration.num_samples = 2
  c.concentration.max_new_tokens = 64
  return c
