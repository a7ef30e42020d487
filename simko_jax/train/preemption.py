"""SIGTERM -> one stop step that every process of the run agrees on.

A preempted TPU pod or a `scancel --signal=TERM` job may deliver SIGTERM to one host, to all of them,
or to all of them at slightly different moments. If each host acted on its own signal, hosts would
leave the loop after different steps: the ones still training block forever in the next step's
collectives, and an Orbax save (a collective of all hosts) would be started for different steps.

So the signal handler only records the signal (`StopRequest.local`), and the loop asks
`StopRequest.agreed()` at one fixed point of every step, which every process reaches the same number
of times. In a multi-process run that is one tiny all-gather of every process's flag (an int32 per
process, `multihost_utils.process_allgather`): if *any* process has seen SIGTERM, all of them see
`True` at the same call, finish the same step, save the same checkpoint and exit 0. A single process
only reads its own flag (no collective). Cost: see benchmarks/README.md ("Agreed preemption stop").

The handler is installed as early as possible (`simko_jax.main` does it before the multi-process
start-up and the run's build), so a SIGTERM while the run is being built is honoured at the first
agreement: no step is trained and the start state is saved.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Sequence

import numpy as np


def senders(flags: Sequence[int] | np.ndarray) -> list[int]:
  """The indices of the processes whose flag is set: `flags` is one int per process, in process
  order (what the all-gather returns). Pure; `[]` means nobody asked to stop."""
  return [int(i) for i in np.flatnonzero(np.asarray(flags).reshape(-1))]


class StopRequest:
  """A stop flag set by SIGTERM (or `request()`), agreed on across processes by `agreed()`."""

  def __init__(self):
    self._local = threading.Event()
    self.senders: list[int] = []   # the processes that had the flag set at the last agreement

  def request(self) -> None:
    """Marks this process as asked to stop (what the SIGTERM handler does)."""
    self._local.set()

  @property
  def local(self) -> bool:
    """Whether this process alone has been asked to stop (no agreement: do not branch on it)."""
    return self._local.is_set()

  def agreed(self) -> bool:
    """True on every process iff any process has been asked to stop.

    Multi-process: a collective, so every process must call it at the same point of the program
    and the same number of times (the loop calls it once per step, before the step). Sets
    `self.senders`.
    """
    import jax
    if jax.process_count() == 1:
      self.senders = [0] if self.local else []
      return self.local
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.asarray([int(self.local)], np.int32))
    self.senders = senders(flags)
    return bool(self.senders)


@contextlib.contextmanager
def on_sigterm(stop: StopRequest | None = None) -> Iterator[StopRequest]:
  """Within the block SIGTERM sets `stop` (a new `StopRequest` if None) instead of ending the
  process; the previous handler is restored on exit. Must be entered in the main thread."""
  stop = stop or StopRequest()
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.request())
  try:
    yield stop
  finally:
    signal.signal(signal.SIGTERM, previous)
