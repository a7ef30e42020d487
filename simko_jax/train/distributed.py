"""Multi-process (multi-host) runtime: when to call `jax.distributed.initialize`, and host <-> global rows.

`maybe_initialize()` must run before any other JAX call that touches a backend (device lists, arrays,
jit). `simko_jax.main` calls it right after the config is validated. It decides from the environment:

  explicit    SIMKO_COORDINATOR=host:port, SIMKO_NUM_PROCESSES=N, SIMKO_PROCESS_ID=i
              [, SIMKO_LOCAL_DEVICE_IDS=0,1,...]  ->  initialize(coordinator_address, N, i, ids)
  SLURM       SLURM_NTASKS > 1 (inside an allocation: SLURM_JOB_ID set)  ->  initialize() (JAX reads
              SLURM_* itself: coordinator = first node of SLURM_STEP_NODELIST, process id = SLURM_PROCID)
  Open MPI    OMPI_COMM_WORLD_SIZE > 1  ->  initialize() (JAX's Open MPI auto-detection)
  TPU pod     MEGASCALE_COORDINATOR_ADDRESS set, or TPU_WORKER_HOSTNAMES lists more than one host
              ->  initialize() (the TPU metadata server supplies everything)
  otherwise   single process: nothing is called.
SIMKO_DISTRIBUTED=0 turns all of this off; SIMKO_DISTRIBUTED=1 forces a bare `initialize()`.

Data convention in multi-process runs: every config batch size (rollout.prompts_per_step,
algo.mini_batch_prompts, algo.micro_batch_size) is *per process*; the prompt pipeline gives host i the
stream positions i, i + P, ... (`PipelineConfig.shard_index/shard_count`), so a global optimizer step
sees P x mini_batch_prompts prompts. Host rows become global arrays with `host_rows_to_global`
(`jax.make_array_from_process_local_data`); a host reads back its own rows with `global_rows_to_host`.
Global arrays of a batch list every host's rows host-major (process 0's, then process 1's, ...).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

_INITIALIZED = False


class DistributedConfigError(ValueError):
  """The SIMKO_* multi-process environment is incomplete or malformed; the message names the fix."""


def _int(env: Mapping[str, str], key: str) -> int:
  try:
    return int(env[key])
  except KeyError as err:
    raise DistributedConfigError(
        f"{key} is not set: SIMKO_COORDINATOR needs SIMKO_NUM_PROCESSES and SIMKO_PROCESS_ID too") from err
  except ValueError as err:
    raise DistributedConfigError(f"{key}={env[key]!r} is not an integer") from err


def initialize_kwargs(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
  """The keyword arguments for `jax.distributed.initialize` implied by `env` (see module doc), or None
  for a single-process run. Pure function of the environment (tested without JAX)."""
  env = os.environ if env is None else env
  switch = env.get("SIMKO_DISTRIBUTED", "").strip().lower()
  if switch in ("0", "false", "off", "no"):
    return None
  if env.get("SIMKO_COORDINATOR"):
    kw: dict[str, Any] = dict(coordinator_address=env["SIMKO_COORDINATOR"],
                              num_processes=_int(env, "SIMKO_NUM_PROCESSES"),
                              process_id=_int(env, "SIMKO_PROCESS_ID"))
    if not 0 <= kw["process_id"] < kw["num_processes"]:
      raise DistributedConfigError(f"SIMKO_PROCESS_ID={kw['process_id']} must be in "
                                   f"[0, SIMKO_NUM_PROCESSES={kw['num_processes']})")
    if env.get("SIMKO_LOCAL_DEVICE_IDS"):
      try:
        kw["local_device_ids"] = [int(i) for i in env["SIMKO_LOCAL_DEVICE_IDS"].split(",") if i.strip()]
      except ValueError as err:
        raise DistributedConfigError(
            f"SIMKO_LOCAL_DEVICE_IDS={env['SIMKO_LOCAL_DEVICE_IDS']!r} is not a comma-separated list "
            "of integers") from err
    return kw
  if switch in ("1", "true", "on", "yes"):
    return {}
  if env.get("SLURM_JOB_ID") and _positive(env.get("SLURM_NTASKS")) > 1:
    return {}
  if _positive(env.get("OMPI_COMM_WORLD_SIZE")) > 1:
    return {}
  if env.get("MEGASCALE_COORDINATOR_ADDRESS"):
    return {}
  hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
  if len(hosts) > 1:
    return {}
  return None


def _positive(value: str | None) -> int:
  try:
    return int(value) if value else 0
  except ValueError:
    return 0


def maybe_initialize(env: Mapping[str, str] | None = None) -> bool:
  """Calls `jax.distributed.initialize` once when the environment says this is one of several
  processes (module doc); returns whether it did. Call before any other JAX backend use."""
  global _INITIALIZED
  kw = initialize_kwargs(env)
  if kw is None or _INITIALIZED:
    return _INITIALIZED
  import jax
  # JAX's preemption service would install a C++ SIGTERM handler in place of the trainer's Python one
  # (train/preemption.py), which agrees on the stop step itself, from start-up on.
  jax.config.update("jax_enable_preemption_service", False)
  jax.distributed.initialize(**kw)
  _INITIALIZED = True
  return True


def use_gloo_on_cpu() -> None:
  """Cross-process collectives for CPU devices (tests, CPU clusters). Call before backend start."""
  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")


# ----------------------------------------------------------------------------- host rows <-> global
def host_rows_to_global(x: np.ndarray, sharding) -> Any:
  """This process's rows -> one global `jax.Array` with `sharding` (an explicit host -> device transfer).

  Single process: `jax.device_put`. Multi-process: `jax.make_array_from_process_local_data`; the global
  shape is the local one with the sharded dimension multiplied by the number of processes that hold
  distinct shards of it (every host passes the same local shape). With a replicated sharding every host
  passes the same whole array.
  """
  import jax
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  return jax.make_array_from_process_local_data(sharding, np.asarray(x))


def global_rows_to_host(tree: Any) -> Any:
  """The rows of global arrays (a pytree) that live on this process's devices, as numpy, in one
  `jax.device_get` (the inverse of `host_rows_to_global` for batch-sharded arrays); single process or
  fully addressable arrays: the whole arrays."""
  import jax

  def local(x):
    if jax.process_count() == 1 or getattr(x, "is_fully_addressable", True):
      return x
    from jax.experimental import multihost_utils
    return multihost_utils.global_array_to_host_local_array(x, x.sharding.mesh, x.sharding.spec)

  return jax.tree.map(np.asarray, jax.device_get(jax.tree.map(local, tree)))


def allgather(x) -> np.ndarray:
  """Every process's copy/shards of `x` gathered on every host (logging, global reward statistics)."""
  import jax
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def gather_json(obj: Any) -> list[Any]:
  """Every process's JSON-serialisable `obj`, in process order, on every process (e.g. the per-host
  prompt-iterator states for a checkpoint, which only process 0 writes). Single process: `[obj]`."""
  import json

  import jax
  if jax.process_count() == 1:
    return [obj]
  from jax.experimental import multihost_utils
  data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
  lengths = np.asarray(multihost_utils.process_allgather(np.asarray([data.size], np.int32)))
  padded = np.zeros((int(lengths.max()),), np.uint8)
  padded[:data.size] = data
  rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths.ravel()), -1)
  return [json.loads(bytes(row[:n]).decode()) for row, n in zip(rows, lengths.ravel())]
