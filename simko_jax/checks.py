"""Validation rules for configuration values: `Check(ok, allowed)` and the few builders every field uses.

Pure Python (no JAX, no ml_collections), so the hyper-parameter declarations in `simko_jax.hparams`
(imported by `simko_jax.losses`, the lowest floor) and the run config in `simko_jax.config` share them.
`allowed` is the human-readable range quoted in error messages ("a number in [0.0, 1.0]").
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Check:
  """A validation rule: `ok(value)` is True when the value is allowed; `allowed` describes the range.

  `choices` is the tuple of allowed values for a `one_of` rule (None for others).
  """
  ok: Callable[[Any], bool]
  allowed: str
  choices: tuple | None = None


def in_range(lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False) -> Check:
  """A number (an int when `integer`) in [lo, hi]; either end open or absent (None = unbounded)."""
  def ok(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
      return False
    if lo is not None and (v <= lo if lo_open else v < lo):
      return False
    return not (hi is not None and (v >= hi if hi_open else v > hi))
  left = "(" if lo_open else "["
  right = ")" if hi_open else "]"
  kind = "an integer" if integer else "a number"
  return Check(ok, f"{kind} in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}")


def one_of(*choices) -> Check:
  """Exactly one of `choices` (compared with ==)."""
  return Check(lambda v: v in choices, f"one of {list(choices)}", tuple(choices))


def is_type(*types, what: str) -> Check:
  """An instance of `types` (bool only when listed: True is not an int here)."""
  return Check(lambda v: isinstance(v, types) and not (bool not in types and isinstance(v, bool)),
               what)


POSITIVE_INT = in_range(1, integer=True)
NON_NEGATIVE_INT = in_range(0, integer=True)
PROBABILITY = in_range(0.0, 1.0)
BOOL = is_type(bool, what="true or false")
STRING = is_type(str, what="a string")
