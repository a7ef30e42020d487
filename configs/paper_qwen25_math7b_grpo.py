"""GRPO baseline on Qwen2.5-Math-7B, MATH train: the SimKO paper config but the method and, as in the
authors' run (verl's default entropy_coeff, not overridden by run_qwen2.5-math-7b_grpo.sh), an entropy
bonus of 0.001 (docs/paper_fidelity.md).

  python -m simko_jax.main --config configs/paper_qwen25_math7b_grpo.py
(weights: the Hub id Qwen/Qwen2.5-Math-7B, see paper_qwen25_math7b_simko.py)
"""

from configs.paper_qwen25_math7b_simko import get_config as _simko


def get_config():
  c = _simko()
  c.out_dir = "runs/qwen25_math7b_grpo"
  c.algo.method = "grpo"
  c.algo.entropy_coef = 0.001
  return c
