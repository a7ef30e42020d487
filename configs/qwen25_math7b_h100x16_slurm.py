"""SimKO on Qwen2.5-Math-7B (paper hyper-parameters, global batch 1024 x 8) on target h100x16_slurm.

Mesh, per-process batch sizes and HBM come from configs/targets.py; see launch/README.md to start it.
  python -m simko_jax.main --config configs/qwen25_math7b_h100x16_slurm.py --dry_run     # sizes it on a CPU
"""

from configs.paper_qwen25_math7b_simko import get_config as _paper
from configs.targets import apply_target


def get_config():
  return apply_target(_paper(), "h100x16_slurm")
