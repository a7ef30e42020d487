"""pass@k evaluation with the SimKO paper's protocol (SIMKO_METHOD.md §8): n=256, T=0.6, top-p 0.95.

  python -m simko_jax.evaluate --config configs/eval_default.py --checkpoint smollm2 \
      --config.benchmarks=gsm8k,math500 --config.num_problems=10 --config.num_samples=8
Every field: `simko_jax.eval.config.default_eval_config`.
"""

from simko_jax.eval.config import default_eval_config


def get_config():
  c = default_eval_config()
  c.out_dir = "runs/eval_default"
  c.prompt_suffix = "\nPlease reason step by step, and put your final answer within \\boxed{}."
  return c
