"""Catch XLA's "[SPMD] Involuntary full rematerialization" while compiling a sharded program.

When the SPMD partitioner cannot turn one sharding of a tensor into another with a collective it knows
(all-gather, all-to-all, ...), it replicates the whole tensor on every device and slices it again, and
says so only as a C++ warning on stderr:

  W... spmd_partitioner.cc:656] [SPMD] Involuntary full rematerialization. The compiler cannot go from
  sharding {devices=[64,1,1]<=[64]} to {devices=[1,1,16,4]<=[4,16]T(1,0) last_tile_dim_replicate}
  efficiently for HLO operation %fake_parameter.2 = f32[1,4096,3584]{2,1,0} parameter(2), ...

On a pod that is a full copy of the tensor per chip, per use (e.g. per micro-batch). The compiled HLO
text does not record it (`Compiled.as_text()` only shows the resulting all-gathers), so
`compile_checked` captures file descriptor 2 around `Lowered.compile()` (the C++ logger writes there,
from any thread) and parses the lines. Everything captured is written back to stderr afterwards, so no
other warning is lost. The HLO shape in the message is the per-device shard, as the partitioner sees it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from typing import Any, Iterator

_MARK = "Involuntary full rematerialization"
_SHARDINGS = re.compile(r"cannot go from sharding (.*?) to (.*?) efficiently for HLO operation")
_OPERATION = re.compile(r"for HLO operation %(\S+) = (\S+?)(?:\{[\d,]*\})? ")


@dataclasses.dataclass(frozen=True)
class Remat:
  """One involuntary full rematerialization: the HLO value, its per-device shape and both shardings."""
  op: str          # HLO instruction name, e.g. "fake_parameter.2"
  shape: str       # per-device shard, e.g. "f32[1,4096,3584]"
  source: str      # HLO sharding it has, e.g. "{devices=[64,1,1]<=[64]}"
  target: str      # HLO sharding its user needs

  def describe(self) -> str:
    return f"{self.shape} (%{self.op}) from {self.source} to {self.target}"


def parse_remats(log_text: str) -> list[Remat]:
  """Every involuntary-full-rematerialization warning in `log_text` (XLA's stderr), in order.

  A warning whose wording does not parse still counts, with "?" for the fields it lacks."""
  found = []
  for line in log_text.splitlines():
    if _MARK not in line:
      continue
    shardings, operation = _SHARDINGS.search(line), _OPERATION.search(line)
    found.append(Remat(op=operation.group(1) if operation else "?",
                       shape=operation.group(2) if operation else "?",
                       source=shardings.group(1) if shardings else "?",
                       target=shardings.group(2) if shardings else "?"))
  return found


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[list[str]]:
  """Redirects fd 2 (C++ and Python stderr) to a temp file; yields a list that holds its text on exit.

  The text is also written back to the real stderr on exit, so nothing printed meanwhile is lost."""
  out: list[str] = []
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield out
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      data = tmp.read()
      out.append(data.decode("utf-8", "replace"))
      os.write(2, data)


def compile_checked(lowered: Any) -> tuple[Any, list[Remat]]:
  """`lowered.compile()` and the involuntary full rematerializations XLA reported while compiling."""
  with captured_stderr_fd() as log:
    compiled = lowered.compile()
  return compiled, parse_remats("".join(log))


def enable_xla_warnings() -> None:
  """Keep XLA's C++ WARNING lines on (call before JAX starts): TF_CPP_MIN_LOG_LEVEL >= 2 hides them,
  and with them the rematerialization warnings `compile_checked` looks for."""
  if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() not in ("", "0", "1"):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
