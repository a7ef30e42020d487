"""SimKO on Gemma 3 1B IT (paper hyper-parameters, global batch 1024 x 8) on target h100x8.

Mesh, per-process batch sizes and HBM come from configs/targets.py; see launch/README.md to start it.
  python -m simko_jax.main --config configs/gemma3_1b_h100x8.py --dry_run     # sizes it on a CPU
"""

from configs.paper_gemma3_1b_simko import get_config as _paper
from configs.targets import apply_target


def get_config():
  c = apply_target(_paper(), "h100x8")
  c.model.attention_impl = "xla"  # see configs/paper_gemma3_1b_simko.py
  return c
