"""GRPO baseline on Qwen2.5-Math-7B, MATH train: identical to the SimKO paper config but the method.

  python -m simko_jax.main --config configs/paper_qwen25_math7b_grpo.py \\
      --config.model.checkpoint=/data/Qwen2.5-Math-7B
"""

from configs.paper_qwen25_math7b_simko import get_config as _simko


def get_config():
  c = _simko()
  c.out_dir = "runs/qwen25_math7b_grpo"
  c.algo.method = "grpo"
  return c
