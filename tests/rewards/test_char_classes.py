"""char_classes: the device's digit / space / letter answers are Python's for every Unicode code point."""
import re

import jax
import jax.numpy as jnp
import numpy as np

from simko_jax.rewards.char_classes import NUM_CODE_POINTS, digit_value, is_alpha, is_space


def _positions(pattern: str, text: str) -> np.ndarray:
  hits = np.zeros(len(text), bool)
  hits[[m.start() for m in re.finditer(pattern, text)]] = True
  return hits


def test_every_code_point_against_re_int_and_str():
  text = "".join(map(chr, range(NUM_CODE_POINTS)))
  code_points = jnp.arange(-2, NUM_CODE_POINTS + 2, dtype=jnp.int32)  # and two outside each end
  values, spaces, letters = map(np.asarray, jax.jit(lambda c: (digit_value(c), is_space(c), is_alpha(c)))(
      code_points))
  assert (values[:2] == -1).all() and (values[-2:] == -1).all() and not spaces[[0, 1, -2, -1]].any()
  values, spaces, letters = values[2:-2], spaces[2:-2], letters[2:-2]
  digits = _positions(r"\d", text)
  np.testing.assert_array_equal(values >= 0, digits)  # `re` \d
  assert [int(text[i]) for i in np.nonzero(digits)[0]] == list(values[digits])  # int() reads the same value
  np.testing.assert_array_equal(spaces, _positions(r"\s", text))  # `re` \s
  np.testing.assert_array_equal(spaces, [ch.isspace() for ch in text])  # what str.strip() removes
  np.testing.assert_array_equal(letters, [ch.isalpha() for ch in text])
  assert digits.sum() > 600 and spaces.sum() > 20  # Unicode, not only ASCII
