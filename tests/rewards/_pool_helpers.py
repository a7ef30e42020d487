"""Test-only reward functions that misbehave on purpose (module-level so workers can unpickle them)."""
import ctypes
import os
import signal
import time


def hang_reward(response: str, ground_truth: str) -> float:
  """Blocks far longer than any test timeout."""
  time.sleep(1000)
  return 1.0


def c_level_hang_reward(response: str, ground_truth: str) -> float:
  """A huge integer power: C code that signal-based (math-verify style) timeouts cannot interrupt."""
  return float(10 ** (10 ** 12) == 0)


def exit_reward(response: str, ground_truth: str) -> float:
  os._exit(3)


def sigkill_self_reward(response: str, ground_truth: str) -> float:
  os.kill(os.getpid(), signal.SIGKILL)
  return 1.0


def segfault_reward(response: str, ground_truth: str) -> float:
  ctypes.string_at(0)  # reads address 0 -> SIGSEGV
  return 1.0


def raising_reward(response: str, ground_truth: str) -> float:
  raise RuntimeError("boom")


def nan_reward(response: str, ground_truth: str) -> float:
  return float("nan")


def memory_hog_reward(response: str, ground_truth: str) -> float:
  """Allocates 8 GiB: must hit the pool's per-worker memory limit (MemoryError) instead of the machine."""
  blob = bytearray(8 * 1024 ** 3)
  return float(len(blob) > 0)
