"""Study 3 (ablations of SimKO on the mechanism study): K, alpha, tau, lambda, and its two parts.

Command:  python experiments/ablations.py            (writes experiments/results/ablations/)
Smoke:    python experiments/ablations.py --quick

Same warm start, task, RL and evaluation settings as `configs/experiments/mechanism.py` (imported, so
the two can never drift apart); the warm start cached by the mechanism study is reused. Each run
changes one SimKO field from the released defaults (K=3, alpha=0.01, tau=0.8, lambda=1.1):
  K in {1, 3, 5}; alpha in {0.005, 0.01, 0.05}; tau in {0.0, 0.6, 0.8}; lambda in {1.0, 1.1, 1.3};
  positive-only part = lambda 1.0 (top-K spreading only); negative-only part = alpha 0 (rank-1 penalty only).
One seed per setting, except the two stronger doses (alpha 0.05, lambda 1.3) and their references
(GRPO, default SimKO), which get 3 (`seeds_per_run`).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mechanism  # noqa: E402  (configs/experiments/mechanism.py)

SIMKO = dict(method="simko", top_k=3, alpha=0.01, lam=1.1, tau=0.8)


def _variant(**changes):
  return {**SIMKO, **changes}


def get_config():
  c = mechanism.get_config()
  c.name = "ablations"
  c.seeds = (0,)
  c.methods = dict(
      grpo=dict(method="grpo"),
      simko=dict(SIMKO),
      k1=_variant(top_k=1), k5=_variant(top_k=5),
      alpha0_005=_variant(alpha=0.005), alpha0_05=_variant(alpha=0.05),
      tau0_0=_variant(tau=0.0), tau0_6=_variant(tau=0.6),
      lam1_3=_variant(lam=1.3),
      positive_only=_variant(lam=1.0),
      negative_only=_variant(alpha=0.0))
  # The two stronger doses, and the references they are compared with, get 3 seeds (the GRPO and
  # SimKO ones are the mechanism study's runs, reused).
  c.seeds_per_run = dict(grpo=(0, 1, 2), simko=(0, 1, 2), alpha0_05=(0, 1, 2), lam1_3=(0, 1, 2))
  # Panels of the figure / sections of the table: (title, [(run, label), ...]).
  c.panels = (
      ("K (top-K candidates)", (("k1", "K=1"), ("simko", "K=3 (default)"), ("k5", "K=5"))),
      ("alpha", (("alpha0_005", "alpha=0.005"), ("simko", "alpha=0.01 (default)"),
                 ("alpha0_05", "alpha=0.05"))),
      ("tau (entropy quantile gate)", (("tau0_0", "tau=0.0"), ("tau0_6", "tau=0.6"),
                                       ("simko", "tau=0.8 (default)"))),
      ("lambda", (("positive_only", "lambda=1.0"), ("simko", "lambda=1.1 (default)"),
                  ("lam1_3", "lambda=1.3"))),
      ("parts", (("grpo", "GRPO"), ("positive_only", "positive part only (lambda=1)"),
                 ("negative_only", "negative part only (alpha=0)"), ("simko", "SimKO (both)"))),
  )
  return c


def quick(c):
  c = mechanism.quick(c)
  c.seeds = (0,)
  c.seeds_per_run = dict(alpha0_05=(0, 1))
  return c
