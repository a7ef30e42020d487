"""Python's own character classes of a Unicode code point, looked up on device.

The host verifiers work on `str`, so `re`'s `\\d` and `int()` accept every Unicode decimal digit (category Nd:
'٣', '３', ...), `\\s` and `str.strip()` every `str.isspace()` character (U+00A0, U+3000, ...), and
`str.isalpha()` every letter. The on-device verifiers see the same code points (`token_text`), so they ask
the same questions through a table built here, once per process, from the running Python's `unicodedata`:
the device answers are those of the host by construction (tests/rewards/test_char_classes.py checks every
code point against `re` and `int`).

Table: one uint8 class byte per code point, bits 0-3 = decimal digit value + 1 (0: not a digit), bit 4 =
isspace, bit 5 = isalpha; stored two-level (`block_4352` -> `classes_Nx256`, blocks of 256 code points,
identical blocks shared, about 30 KiB; about a second to build). Code points outside [0, 0x10FFFF] (e.g.
the -1 padding of a text array) are in no class.
"""

from __future__ import annotations

import functools
import sys

import jax.numpy as jnp
import numpy as np

NUM_CODE_POINTS = sys.maxunicode + 1  # 0x110000
_BLOCK = 256
_SPACE_BIT, _ALPHA_BIT = 16, 32


@functools.lru_cache(maxsize=1)
def class_tables() -> tuple[np.ndarray, np.ndarray]:
  """(block_index int32 [4352], classes uint8 [N, 256]) for every code point (see module docstring)."""
  classes = np.zeros(NUM_CODE_POINTS, np.uint8)
  for cp in range(NUM_CODE_POINTS):
    ch = chr(cp)
    if ch.isdecimal():
      classes[cp] = int(ch) + 1
    elif ch.isspace():
      classes[cp] = _SPACE_BIT
    if ch.isalpha():  # never a digit or a space: the three classes are disjoint
      classes[cp] |= _ALPHA_BIT
  blocks = classes.reshape(-1, _BLOCK)
  unique, block_index = np.unique(blocks, axis=0, return_inverse=True)
  return block_index.reshape(-1).astype(np.int32), unique


def _classes(cp):
  """uint8 class byte of int32 code points `cp` (any shape); 0 outside the Unicode range."""
  block_index, classes = class_tables()
  inside = (cp >= 0) & (cp < NUM_CODE_POINTS)
  safe = jnp.where(inside, cp, 0)
  block = jnp.asarray(block_index)[safe // _BLOCK]
  return jnp.where(inside, jnp.asarray(classes)[block, safe % _BLOCK], 0).astype(jnp.int32)


def digit_value(cp):
  """int32: the decimal value of `cp` if it is a Unicode decimal digit (`re` `\\d`, `int()`), else -1."""
  return (_classes(cp) & 15) - 1


def is_digit(cp):
  return digit_value(cp) >= 0


def is_space(cp):
  """`str.isspace()` (= `re` `\\s`, = what `str.strip()` removes)."""
  return (_classes(cp) & _SPACE_BIT) > 0


def is_alpha(cp):
  """`str.isalpha()`."""
  return (_classes(cp) & _ALPHA_BIT) > 0
