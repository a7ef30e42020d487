"""Suite-wide setup: 8 fake CPU devices for sharding tests, no network, fp32 matmuls."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


# ------------------------------------------------------------------------------------- GCS stand-in
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
  """A fake-gcs-server on 127.0.0.1 (tests/gcs_emulator.py) with bucket `gs://simko-test`, used by this
  process (os.environ + fsspec config) while the session runs; `gcs.env` is the same for subprocesses."""
  from tests.gcs_emulator import GcsEmulator, restore_process, use_in_this_process
  emulator = GcsEmulator(str(tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log"))
  emulator.bucket = emulator.create_bucket("simko-test")
  previous = use_in_this_process(emulator.env)
  try:
    yield emulator
  finally:
    restore_process(previous)
    emulator.stop()
