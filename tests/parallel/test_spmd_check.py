"""The involuntary-rematerialization detector: parses XLA's real warning, fires on a deliberately
mismatched sharding compiled on 8 fake CPU devices, stays quiet on agreeing ones, and loses no stderr."""

import os

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from simko_jax.parallel import make_mesh
from simko_jax.parallel.spmd_check import captured_stderr_fd, compile_checked, parse_remats

# Verbatim from `--dry_run` of configs/qwen25_math7b_tpu_v5p_128.py before the lookup fix (shortened tail).
XLA_LINE = (
    "W1207 20:51:21.716990    5404 spmd_partitioner.cc:656] [SPMD] Involuntary full rematerialization. "
    "The compiler cannot go from sharding {devices=[64,1,1]<=[64]} to {devices=[1,1,16,4]<=[4,16]T(1,0) "
    "last_tile_dim_replicate} efficiently for HLO operation %fake_parameter.2 = f32[1,4096,3584]{2,1,0} "
    "parameter(2), sharding={devices=[64,1,1]<=[64]}. As the last resort, SPMD will replicate the "
    "tensor and then partition it to obtain the target sharding, which is inefficient.")


def test_parse_real_warning_line():
  other = "W1207 20:51:21.0 5404 something_else.cc:1] unrelated warning"
  (r,) = parse_remats("\n".join([other, XLA_LINE, other]))
  assert (r.op, r.shape) == ("fake_parameter.2", "f32[1,4096,3584]")
  assert r.source == "{devices=[64,1,1]<=[64]}"
  assert r.target == "{devices=[1,1,16,4]<=[4,16]T(1,0) last_tile_dim_replicate}"
  assert "f32[1,4096,3584]" in r.describe() and "[64,1,1]" in r.describe()


def test_unparsable_warning_still_counts():
  (r,) = parse_remats("W... [SPMD] Involuntary full rematerialization. (new wording)")
  assert r.shape == "?" and r.source == "?"


@pytest.fixture(scope="module")
def mesh():
  if jax.device_count() < 8:
    pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/conftest.py)")
  return make_mesh(2, 4, 1, devices=jax.devices()[:8])


def remats_of(mesh, out_spec):
  """Compile x*2+1 with rows sharded over (data, fsdp) and its result forced to `out_spec`."""
  rows = NamedSharding(mesh, P(("data", "fsdp")))
  x = jax.ShapeDtypeStruct((8, 16, 32), jnp.float32, sharding=rows)
  f = jax.jit(lambda x: jax.lax.with_sharding_constraint(x * 2, NamedSharding(mesh, out_spec)) + 1)
  return compile_checked(f.lower(x))[1]


def test_detector_fires_on_mismatched_sharding(mesh):
  # Rows over data x fsdp -> features over fsdp, replicated over data: no collective does that in one
  # step, so XLA replicates the [8, 16, 32] tensor (the pattern of the old embedding gradient).
  (r,) = remats_of(mesh, P(None, None, "fsdp"))
  assert r.shape == "f32[1,16,32]"   # the per-device shard: 8 rows over 8 devices
  assert r.source == "{devices=[8,1,1]<=[8]}"


@pytest.mark.parametrize("spec", [P(("data", "fsdp")), P("data", None, "fsdp")])
def test_detector_quiet_on_agreeing_or_all_to_all_shardings(mesh, spec):
  assert remats_of(mesh, spec) == []


def test_capture_passes_stderr_through(capfd):
  # fd 2 is what XLA's C++ logger writes to (pytest's `sys.stderr` is not fd 2, so write to fd 2).
  with captured_stderr_fd() as log:
    os.write(2, b"from C\n")
  assert log == ["from C\n"]
  assert capfd.readouterr().err == "from C\n"
