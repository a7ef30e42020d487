"""Evaluation and monitoring metrics: pass@k / maj@k estimators and concentration (Lambda, rank probs).

    from simko_jax.metrics import pass_at_k, maj_at_k, concentration_metrics
    pass_at_k(n=16, c=3, k=4)          # the unbiased estimator (a function, from `estimators.py`)

The estimators are numpy only; `concentration_metrics` needs JAX and is imported on first use, so the
report and evaluation tools that only count passes never import JAX. The figure and FLOP helpers stay
modules: `from simko_jax.metrics import plots, flops`.
"""

from simko_jax.metrics.estimators import MAJ_METHODS, maj_at_k, mean_pass_at_k, pass_at_k

_LAZY = {"concentration_metrics": "simko_jax.metrics.concentration"}
__all__ = ["MAJ_METHODS", "maj_at_k", "mean_pass_at_k", "pass_at_k", *_LAZY]


def __getattr__(name):
  if name in _LAZY:
    import importlib  # noqa: PLC0415
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'simko_jax.metrics' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_LAZY])
