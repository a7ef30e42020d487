"""The public entry points give what users expect: functions, not same-named modules; light imports."""

import importlib
import pkgutil
import subprocess
import sys
import types

import numpy as np
import pytest

PACKAGES = ("simko_jax", "simko_jax.metrics", "simko_jax.losses", "simko_jax.rewards", "simko_jax.data")


def test_pass_at_k_is_the_estimator():
  from simko_jax.metrics import concentration_metrics, maj_at_k, pass_at_k
  from simko_jax.metrics import estimators, concentration
  assert pass_at_k is estimators.pass_at_k and maj_at_k is estimators.maj_at_k
  assert concentration_metrics is concentration.concentration_metrics
  # n = 4 samples, c = 1 correct, k = 2: 1 - C(3, 2) / C(4, 2) = 1/2.
  np.testing.assert_allclose(pass_at_k(4, 1, 2), 0.5)
  import simko_jax.metrics
  assert simko_jax.metrics.pass_at_k is pass_at_k   # attribute access too
  assert "concentration_metrics" in dir(simko_jax.metrics)


def test_old_module_path_still_imports_for_one_release_with_a_warning():
  import simko_jax.metrics
  from simko_jax.metrics import estimators
  with pytest.warns(DeprecationWarning, match="simko_jax.metrics.estimators"):
    from simko_jax.metrics.pass_at_k import maj_at_k
  assert maj_at_k is estimators.maj_at_k
  assert simko_jax.metrics.pass_at_k is estimators.pass_at_k   # still the function afterwards


@pytest.mark.parametrize("package", PACKAGES)
def test_no_exported_name_is_shadowed_by_a_submodule(package):
  """Importing every submodule must leave each exported function/class in place (a submodule named
  like a function replaces it on the package: the `metrics.pass_at_k` surprise)."""
  pkg = importlib.import_module(package)
  names = [n for n in getattr(pkg, "__all__", dir(pkg)) if not n.startswith("_")]
  exported = {n: getattr(pkg, n) for n in names if not isinstance(getattr(pkg, n), types.ModuleType)}
  assert exported, package
  for sub in pkgutil.iter_modules(pkg.__path__):
    importlib.import_module(f"{package}.{sub.name}")
  for name, value in exported.items():
    assert getattr(pkg, name) is value, f"{package}.{name} is shadowed by a submodule"


def test_estimators_and_loss_names_import_without_jax():
  code = ("import sys; from simko_jax.metrics import pass_at_k, maj_at_k; import simko_jax; "
          "assert 'grpo_loss' in dir(simko_jax); assert 'jax' not in sys.modules, 'jax imported'")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
