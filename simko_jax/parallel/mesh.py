"""Device mesh construction with the project's three named axes ("data", "fsdp", "tensor")."""

from __future__ import annotations

from typing import Sequence

import jax
from jax.sharding import AxisType, Mesh

MESH_AXES: tuple[str, str, str] = ("data", "fsdp", "tensor")


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A `Mesh` of shape (data, fsdp, tensor) over `devices` (default: all of `jax.devices()`).

  All axes are `AxisType.Auto` (the compiler propagates shardings). The product of the three sizes must
  equal the number of devices; otherwise a `ValueError` names the sizes and how to fix them.
  """
  sizes = (int(data), int(fsdp), int(tensor))
  if any(s < 1 for s in sizes):
    raise ValueError(f"mesh sizes must be >= 1, got (data, fsdp, tensor) = {sizes}")
  devs = list(jax.devices() if devices is None else devices)
  product = sizes[0] * sizes[1] * sizes[2]
  if product != len(devs):
    raise ValueError(
        f"mesh (data, fsdp, tensor) = {sizes} has {product} slots but there are {len(devs)} devices; "
        f"choose sizes whose product is {len(devs)} (e.g. data={len(devs)}, fsdp=1, tensor=1), or for "
        "fake CPU devices set XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax.")
  if devices is None:
    return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * 3)
  import numpy as np
  return Mesh(np.asarray(devs).reshape(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3)
