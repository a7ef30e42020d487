"""Shared fixtures: one JAX compilation cache and one uninterrupted reference run per session."""

import pytest

from tests.faults import harness


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="session")
def reference(tmp_path_factory, cache_dir):
  """An uninterrupted `harness.STEPS`-step run (the ground truth every faulted run must equal)."""
  out = tmp_path_factory.mktemp("reference") / "run"
  rc, text = harness.run(out, cache_dir=cache_dir)
  assert rc == 0, text[-3000:]
  harness.assert_params_moved(out, harness.STEPS)
  return out
