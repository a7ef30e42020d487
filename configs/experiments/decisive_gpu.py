"""Study 4 on one accelerator (`bash experiments/decisive_gpu.sh`): 10x the CPU pilot's model and
samples, sized for one call of < 8 minutes on an H100 (not yet run: no device was lent).

Changes from `decisive.py` (the CPU pilot), everything else equal:
  * model ~10x: 8 layers, width 256, 8 heads, MLP 768 (6.85M parameters vs 0.66M); its warm
    start is trained in the same call (same recipe, same clean split) and saved next to the results
    with its sha256, so a rerun reuses it;
  * evaluation 8x the samples: 256 problems x 256 samples (pass@1 .. pass@256, the pre-registered
    primary K = 256);
  * 33 seeds per method (the pre-registered n for a +/- 2-point half-width at a paired sd of 5.6
    points), 40 RL steps (study 1's length), pass@k also at step 20 to see whether GRPO's decline
    has levelled off.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import decisive  # noqa: E402  (configs/experiments/decisive.py)


def get_config():
  c = decisive.get_config()
  c.name = "decisive_gpu"
  c.model.update(hidden_size=256, num_layers=8, num_heads=8, intermediate_size=768)
  c.num_seeds = 33
  c.seeds = tuple(range(c.num_seeds))
  c.rl.train.steps = 40
  c.eval.num_samples = 256
  c.eval.curve_every = 20
  c.eval.chunk_problems = 32
  return c


def quick(c):
  return decisive.quick(c)
