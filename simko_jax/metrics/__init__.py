"""Evaluation and monitoring metrics: pass@k / maj@k estimators and concentration (Lambda, rank probs).

    from simko_jax.metrics import pass_at_k, maj_at_k, concentration_metrics
    pass_at_k(n=16, c=3, k=4)          # the unbiased estimator (a function, from `estimators.py`)

The estimators are numpy only; `concentration_metrics` needs JAX and is imported on first use, so the
report and evaluation tools that only count passes never import JAX. The figure and FLOP helpers stay
modules: `from simko_jax.metrics import plots, flops`.
"""

import sys
import types
import warnings

from simko_jax.metrics import estimators
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


def _old_module_alias() -> types.ModuleType:
  """Until issue 22 `simko_jax.metrics.pass_at_k` was a module (now `estimators.py`). For one release
  `from simko_jax.metrics.pass_at_k import maj_at_k` still works, with a DeprecationWarning, through
  this entry in `sys.modules`; the package attribute `pass_at_k` stays the estimator function (an entry
  found in `sys.modules` is never set on its parent package). Remove in the next release."""
  alias = types.ModuleType(f"{__name__}.pass_at_k", "Deprecated alias of simko_jax.metrics.estimators.")

  def forward(name):
    if name.startswith("__"):
      raise AttributeError(name)
    warnings.warn("the module simko_jax.metrics.pass_at_k is now simko_jax.metrics.estimators; import "
                  f"{name} from simko_jax.metrics instead (this alias goes in the next release)",
                  DeprecationWarning, stacklevel=2)
    return getattr(estimators, name)

  alias.__getattr__ = forward
  return alias


sys.modules.setdefault(f"{__name__}.pass_at_k", _old_module_alias())
