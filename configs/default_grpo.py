"""The embedded default with GRPO instead of SimKO (the comparison baseline).

Command:  python -m simko_jax.main --config configs/default_grpo.py
"""

from configs.default import get_config as _simko_config


def get_config():
  c = _simko_config()
  c.out_dir = "runs/default_grpo"
  c.algo.method = "grpo"
  return c
