"""GRPO baseline on Llama-3.2-3B-Instruct, GSM8K + MATH level-1 mix.

  HF_TOKEN=hf_... python -m simko_jax.main --config configs/paper_llama32_3b_grpo.py
(weights: the gated Hub id meta-llama/Llama-3.2-3B-Instruct, see paper_llama32_3b_simko.py)
"""

from configs.paper_llama32_3b_simko import get_config as _simko


def get_config():
  c = _simko()
  c.out_dir = "runs/llama32_3b_grpo"
  c.algo.method = "grpo"
  return c
