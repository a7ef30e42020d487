"""Study 4 (issue 24): the decisive GRPO vs SimKO comparison, many seeds batched with `jax.vmap`.

Same task, model, warm-up recipe, RL settings and evaluation protocol as study 1
(`configs/experiments/mechanism.py`, imported), except:
  * a clean evaluation set: `eval.num_problems` held-out problems, pairwise distinct and disjoint in
    content (number multiset + target) from every training problem; the warm-up and RL train only on
    the remaining training problems (`experiments.task.clean_split`), so the warm start is retrained;
  * many seeds per method, trained together (`experiments.vmapped`), and a longer run with pass@k
    measured every `eval.curve_every` steps;
  * only the two methods of the primary endpoint (GRPO and SimKO at the released defaults).
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mechanism  # noqa: E402  (configs/experiments/mechanism.py)


def get_config():
  c = mechanism.get_config()
  c.name = "decisive"
  # The CPU pilot pre-registered in experiments/README.md, cut (before any post-RL evaluation) to what
  # the shared 2-core machine allowed in the session: 117 s per RL step of 10 vmapped seeds per
  # method at load average ~20 (see the README's deviation note).
  c.num_seeds = 10                 # seeds 0 .. num_seeds-1 per method
  c.seeds = tuple(range(c.num_seeds))
  c.methods = ml_collections.ConfigDict(dict(grpo=c.methods.grpo, simko=c.methods.simko))
  c.rl.train.steps = 12
  c.eval.num_problems = 256
  c.eval.num_samples = 16
  c.eval.curve_every = 0           # 0: evaluate the final policies only (the trainer's per-step
                                   # rollout metrics give the curves); N: also every N steps
  c.eval.bootstrap = 2000          # paired bootstrap resamples (seeds x problems)
  return c


def quick(c):
  """--quick: the same code paths at smoke-test sizes."""
  c.num_seeds = 2
  c.seeds = (0, 1)
  c.sft.steps = 20
  c.sft.log_every = 10
  c.rl.train.steps = 2
  c.eval.num_problems = 8
  c.eval.num_samples = 16
  c.eval.curve_every = 1
  c.eval.bootstrap = 50
  return c
