"""GRPO baseline on Llama-3.2-3B-Instruct, GSM8K + MATH level-1 mix.

  python -m simko_jax.main --config configs/paper_llama32_3b_grpo.py \\
      --config.model.checkpoint=/data/Llama-3.2-3B-Instruct
"""

from configs.paper_llama32_3b_simko import get_config as _simko


def get_config():
  c = _simko()
  c.out_dir = "runs/llama32_3b_grpo"
  c.algo.method = "grpo"
  return c
