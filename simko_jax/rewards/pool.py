"""`VerifierPool`: score untrusted model answers in worker processes with a hard per-answer timeout.

    with VerifierPool(num_workers=4, timeout_s=5.0) as pool:
      rewards = pool.score([(response_text, ground_truth, data_source), ...])   # list[float], same order
      pool.last_batch_stats   # BatchStats(timeouts, crashes, errors, truncated, restarts, ...)

Guarantees / invariants:
  * Each answer runs alone in one worker process (main thread, so math-verify's signal.alarm works).
    If it has not answered `timeout_s` seconds after dispatch, the worker is SIGKILLed, joined and replaced,
    and the answer scores 0.0. A worker that dies (segfault, os._exit, SIGKILL, OOM) scores its answer 0.0
    and is replaced. A reward fn that raises, or returns a non-finite value, scores 0.0 (counted in errors).
  * The caller never waits longer than about ceil(n / num_workers) * (timeout_s + worker start) seconds, and
    never longer than `batch_timeout_s` when given (then unfinished answers score 0.0 and count as timeouts).
  * Model output is never `eval`/`exec`-ed. Responses longer than `max_response_chars` are truncated to
    their LAST `max_response_chars` characters before checking (the final boxed answer sits at the end);
    this bounds IPC and parser cost for gigantic outputs.
  * Workers are started with the 'forkserver' context by default (warm imports preloaded once in the
    fork server; the trainer process, which may have initialised JAX, is never forked). 'spawn' also works.
  * `close()` (or leaving the `with` block) stops and joins every worker; no zombie processes remain.
    Workers also ask the kernel to kill them if the parent dies (Linux PR_SET_PDEATHSIG).
  * Reward functions are looked up in the parent (`registry.get_reward_fn`; unknown source -> KeyError
    before any work starts) and sent to workers by reference, so they must be module-level functions.
  * Not thread-safe across concurrent `score` calls on the same pool (serialised by a lock).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import multiprocessing.connection
import signal
import threading
import time
from collections import deque
from typing import Sequence

from simko_jax.rewards.registry import get_reward_fn

_PRELOAD_MODULES = ["simko_jax.rewards.pool", "math_verify", "sympy"]
_MAX_DELIVERY_ATTEMPTS = 3


@dataclasses.dataclass
class BatchStats:
  """Counters for one `score` call (or, for `total_stats`, summed over calls)."""
  num_answers: int = 0
  num_timeouts: int = 0
  num_crashes: int = 0
  num_errors: int = 0
  num_truncated: int = 0
  num_worker_restarts: int = 0
  wall_s: float = 0.0

  def add(self, other: "BatchStats") -> None:
    for field in dataclasses.fields(self):
      setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def _set_parent_death_signal() -> None:
  """Linux only, best effort: SIGKILL this worker if its parent process dies."""
  try:
    import ctypes
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
  except Exception:  # noqa: BLE001
    pass


def _worker_main(conn, inner_timeout_s: int | None, max_memory_mb: int | None) -> None:
  """Worker loop: recv (task_id, fn, response, gold) -> send (task_id, ok, reward). None -> exit."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business; it will close us.
  _set_parent_death_signal()
  if max_memory_mb:
    import resource
    limit = int(max_memory_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
  from simko_jax.rewards import math_verify_check
  math_verify_check.set_inner_timeout(inner_timeout_s)
  conn.send(("ready",))
  while True:
    try:
      message = conn.recv()
    except (EOFError, OSError):
      return
    if message is None:
      return
    task_id, fn, response, ground_truth = message
    try:
      reward = float(fn(response, ground_truth))
      ok = math.isfinite(reward)
      reward = reward if ok else 0.0
    except BaseException:  # noqa: BLE001 - incl. MemoryError/RecursionError: the answer just scores 0
      ok, reward = False, 0.0
    try:
      conn.send((task_id, ok, reward))
    except (EOFError, OSError):
      return


class _Worker:
  """One worker process, its pipe end, and what it is doing (starting / idle / busy with a task)."""

  def __init__(self, ctx, inner_timeout_s, max_memory_mb):
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    self.process = ctx.Process(target=_worker_main, args=(child_conn, inner_timeout_s, max_memory_mb),
                               daemon=True, name="simko-verifier")
    self.process.start()
    child_conn.close()
    self.conn = parent_conn
    self.ready = False
    self.started_at = time.monotonic()
    self.task: int | None = None
    self.deadline = math.inf

  def kill(self) -> None:
    try:
      self.process.kill()
    except Exception:  # noqa: BLE001 - already gone
      pass
    self.process.join(timeout=5.0)
    self.conn.close()

  def stop(self) -> None:
    """Polite shutdown, then SIGKILL if it does not exit promptly."""
    try:
      if self.task is None:
        self.conn.send(None)
    except (OSError, ValueError):
      pass
    self.process.join(timeout=1.0)
    if self.process.is_alive():
      self.process.kill()
      self.process.join(timeout=5.0)
    self.conn.close()


class VerifierPool:
  """Process pool scoring `(response, ground_truth, data_source)` triples; see module docstring.

  Args:
    num_workers: worker processes (>= 1).
    timeout_s: per-answer wall-clock limit, measured from dispatch to a ready worker.
    max_response_chars: responses are cut to their last this-many characters before checking.
    default_source: registry name used for unknown data sources (None -> KeyError for unknown ones).
    math_extraction: answer extraction of MATH-type sources ("boxed" | "boxed_answer_is_number", see
      `registry.get_reward_fn`; `config.rewards.math_extraction`).
    batch_timeout_s: optional limit for a whole `score` call.
    startup_timeout_s: a worker that is not ready this long after start is killed and replaced.
    start_method: 'forkserver' (default) or 'spawn'. Never 'fork' (the parent may hold JAX threads).
    max_memory_mb: optional address-space limit per worker (RLIMIT_AS); exceeding it scores 0.
  """

  def __init__(self, num_workers: int = 4, timeout_s: float = 5.0, *, max_response_chars: int = 20_000,
               default_source: str | None = None, batch_timeout_s: float | None = None,
               startup_timeout_s: float = 60.0, start_method: str = "forkserver",
               max_memory_mb: int | None = None, math_extraction: str = "boxed"):
    if num_workers < 1 or timeout_s <= 0 or max_response_chars < 1:
      raise ValueError("need num_workers >= 1, timeout_s > 0, max_response_chars >= 1")
    if start_method not in ("forkserver", "spawn"):
      raise ValueError(f"start_method must be 'forkserver' or 'spawn', got {start_method!r}")
    self.num_workers = num_workers
    self.timeout_s = float(timeout_s)
    self.max_response_chars = max_response_chars
    self.default_source = default_source
    get_reward_fn("math", math_extraction=math_extraction)  # refuses an unknown value before any start
    self.math_extraction = math_extraction
    self.batch_timeout_s = batch_timeout_s
    self.startup_timeout_s = startup_timeout_s
    self._max_memory_mb = max_memory_mb
    # math-verify's own alarm fires first for slow pure-Python work (cheap: no worker restart).
    self._inner_timeout_s = max(1, int(self.timeout_s // 2)) if self.timeout_s >= 2 else None
    self._ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
      self._ctx.set_forkserver_preload(_PRELOAD_MODULES)
    self._lock = threading.Lock()
    self._closed = False
    self.last_batch_stats = BatchStats()
    self.total_stats = BatchStats()
    self._workers = [self._new_worker() for _ in range(num_workers)]

  # ------------------------------------------------------------------ lifecycle
  def _new_worker(self) -> _Worker:
    return _Worker(self._ctx, self._inner_timeout_s, self._max_memory_mb)

  def worker_pids(self) -> list[int]:
    """PIDs of the current workers (for monitoring/tests)."""
    return [w.process.pid for w in self._workers]

  def close(self) -> None:
    """Stop and join all workers. Idempotent."""
    with self._lock:
      if self._closed:
        return
      self._closed = True
      for worker in self._workers:
        worker.stop()
      self._workers = []

  def __enter__(self) -> "VerifierPool":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # noqa: BLE001
      pass

  # ------------------------------------------------------------------ scoring
  def _replace(self, slot: int, stats: BatchStats) -> None:
    self._workers[slot].kill()
    self._workers[slot] = self._new_worker()
    stats.num_worker_restarts += 1

  def score(self, batch: Sequence[tuple[str, str, str]]) -> list[float]:
    """Rewards (floats, same order as `batch`) for `(response, ground_truth, data_source)` triples."""
    with self._lock:
      if self._closed:
        raise RuntimeError("VerifierPool is closed")
      stats = BatchStats(num_answers=len(batch))
      start = time.monotonic()
      tasks = []
      for response, ground_truth, data_source in batch:
        fn = get_reward_fn(data_source, default=self.default_source,  # KeyError before any work
                           math_extraction=self.math_extraction)
        response = "" if response is None else str(response)
        if len(response) > self.max_response_chars:
          response = response[-self.max_response_chars:]
          stats.num_truncated += 1
        tasks.append((fn, response, str(ground_truth)))
      rewards = self._run(tasks, stats, start)
      stats.wall_s = time.monotonic() - start
      self.last_batch_stats = stats
      self.total_stats.add(stats)
      return rewards

  def _run(self, tasks, stats: BatchStats, start: float) -> list[float]:
    # A previous call interrupted mid-batch (exception, KeyboardInterrupt) may have left workers busy
    # with stale tasks whose results would be misattributed: replace them first.
    for slot, worker in enumerate(self._workers):
      if worker.task is not None:
        self._replace(slot, stats)
    rewards = [0.0] * len(tasks)
    pending = deque(range(len(tasks)))
    attempts = [0] * len(tasks)
    batch_deadline = start + self.batch_timeout_s if self.batch_timeout_s else math.inf
    consecutive_start_failures = 0
    while pending or any(w.task is not None for w in self._workers):
      now = time.monotonic()
      if now >= batch_deadline:
        for slot, worker in enumerate(self._workers):
          if worker.task is not None:
            stats.num_timeouts += 1
            self._replace(slot, stats)
        stats.num_timeouts += len(pending)
        return rewards
      # Dispatch to idle ready workers.
      for slot, worker in enumerate(self._workers):
        if pending and worker.ready and worker.task is None:
          task_id = pending.popleft()
          attempts[task_id] += 1
          try:
            worker.conn.send((task_id, *tasks[task_id]))
          except (OSError, ValueError):  # died while idle: requeue (bounded) and replace
            if attempts[task_id] < _MAX_DELIVERY_ATTEMPTS:
              pending.appendleft(task_id)
            else:
              stats.num_crashes += 1
            self._replace(slot, stats)
            continue
          worker.task, worker.deadline = task_id, time.monotonic() + self.timeout_s
      # Wait for results, deaths, readiness or the nearest deadline.
      deadlines = [w.deadline if w.ready else w.started_at + self.startup_timeout_s for w in self._workers]
      wait_s = max(0.0, min(min(deadlines), batch_deadline) - time.monotonic())
      waitables = [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers]
      multiprocessing.connection.wait(waitables, timeout=min(wait_s, 1.0))
      now = time.monotonic()
      for slot, worker in enumerate(self._workers):
        message, dead = None, False
        try:
          if worker.conn.poll():
            message = worker.conn.recv()
        except (EOFError, OSError):
          dead = True
        if message is not None:
          if message[0] == "ready":
            worker.ready = True
            consecutive_start_failures = 0
          else:
            task_id, ok, reward = message
            if task_id == worker.task:
              rewards[task_id] = reward
              stats.num_errors += 0 if ok else 1
              worker.task, worker.deadline = None, math.inf
          continue
        if dead or not worker.process.is_alive():
          if worker.task is not None:
            stats.num_crashes += 1
          elif not worker.ready:
            consecutive_start_failures += 1
          self._replace(slot, stats)
        elif worker.task is not None and now >= worker.deadline:
          stats.num_timeouts += 1
          self._replace(slot, stats)
        elif not worker.ready and now >= worker.started_at + self.startup_timeout_s:
          consecutive_start_failures += 1
          self._replace(slot, stats)
        if consecutive_start_failures > 3 * self.num_workers:
          raise RuntimeError("VerifierPool workers keep failing to start; see worker stderr")
    return rewards
