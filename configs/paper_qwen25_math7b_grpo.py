"""GRPO baseline on Qwen2.5-Math-7B, MATH train: identical to the SimKO paper config but the method.

  python -m simko_jax.main --config configs/paper_qwen25_math7b_grpo.py
(weights: the Hub id Qwen/Qwen2.5-Math-7B, see paper_qwen25_math7b_simko.py)
"""

from configs.paper_qwen25_math7b_simko import get_config as _simko


def get_config():
  c = _simko()
  c.out_dir = "runs/qwen25_math7b_grpo"
  c.algo.method = "grpo"
  return c
