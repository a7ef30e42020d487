"""The "arith" and "arith_plain" rewards on device: `registry.arith_reward` / `registry.final_number_reward`
over the code points of `token_text.response_chars`, equal to them reward for reward.

    truth = arith_truth(["42", "-7", ...])                      # host, once per prompt draw
    rewards_B = arith_rewards(chars_BxX, length_B, truth, "boxed")   # or "plain"

What the host functions accept, restated over code points (tests/rewards/test_arith_device.py checks the two
agree on >= 10,000 random and adversarial responses):
  boxed  the last `\\boxed`/`\\fbox` content (`text_spans.last_boxed`), with ',' ' ' '$' removed, is
         `-?D` with 1-50 Unicode decimal digits D (`re` `\\d`), and int(D) (sign applied) is the truth.
  plain  the same content, else (no box at all) the last `extract._NUMBER_RE` match in `re.findall` order
         (','/'$' removed; an all-'0' fraction dropped; '.0' alone reads as '0'), is `-?D(\\.0+)?`.
Integers are compared as digit strings (leading zeros dropped, -0 == 0), so any size is exact without
int64. Ground truths are parsed exactly as the host does (`int(truth.strip())`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from simko_jax.rewards.char_classes import digit_value
from simko_jax.rewards.text_spans import (in_span, last_boxed, last_chain_match, next_index, one_of, pad_row)

MAX_DIGITS = 50  # the host regex's `\d{1,50}`
ANSWER_FORMATS = ("boxed", "plain")


class ArithTruth(NamedTuple):
  """Ground truths as arrays (row-aligned with the responses):
    digits_BxW    int32 [B, 50]  significant decimal digits, most significant first (0-padded)
    num_digits_B  int32 [B]      how many (0 for the value 0; 51 if longer than any answer can be)
    negative_B    bool  [B]"""
  digits_BxW: jax.Array
  num_digits_B: jax.Array
  negative_B: jax.Array


def arith_truth(ground_truths: Sequence[str]) -> ArithTruth:
  """Host: ground-truth strings -> `ArithTruth` (numpy). ValueError naming a string `int()` cannot read."""
  digits = np.zeros((len(ground_truths), MAX_DIGITS), np.int32)
  num_digits = np.zeros(len(ground_truths), np.int32)
  negative = np.zeros(len(ground_truths), bool)
  for row, truth in enumerate(ground_truths):
    try:
      value = int(str(truth).strip())
    except ValueError:
      raise ValueError(f"arith ground truth {truth!r} is not an integer; the arith tasks write str(int)") from None
    text = str(abs(value)) if value else ""
    negative[row] = value < 0
    num_digits[row] = len(text) if len(text) <= MAX_DIGITS else MAX_DIGITS + 1
    digits[row, :min(len(text), MAX_DIGITS)] = [int(ch) for ch in text[:MAX_DIGITS]]
  return ArithTruth(digits, num_digits, negative)


def _number(c_Y, keep_Y, zero_fraction: bool, empty_int_is_zero: bool):
  """`-?D` (or `-?D(\\.0+)?`) check of the kept characters, in order. Returns (ok, negative, int_digits_Y):
  the positions of D's digits. `empty_int_is_zero`: `.0+` alone (no sign) reads as 0 (`_clean_number`)."""
  idx = jnp.arange(c_Y.shape[0])
  rank = jnp.cumsum(keep_Y) - 1
  negative = jnp.any(keep_Y & (rank == 0) & (c_Y == ord("-")))
  body = keep_Y & ~((rank == 0) & (c_Y == ord("-")))
  is_dot = body & (c_Y == ord("."))
  dot = jnp.min(jnp.where(is_dot, idx, c_Y.shape[0])) if zero_fraction else c_Y.shape[0]
  int_part = body & (idx < dot)
  frac = body & (idx > dot)
  has_dot = jnp.any(is_dot) if zero_fraction else jnp.array(False)
  n_int = jnp.sum(int_part)
  digits_ok = jnp.all(jnp.where(int_part, digit_value(c_Y) >= 0, True))
  frac_ok = ~has_dot | ((jnp.sum(frac) >= 1) & jnp.all(jnp.where(frac, c_Y == ord("0"), True)))
  ok = digits_ok & frac_ok & (n_int >= 1) & (n_int <= MAX_DIGITS)
  if empty_int_is_zero:
    ok |= (n_int == 0) & has_dot & frac_ok & ~negative
  return ok, negative, int_part


def _equals_truth(c_Y, int_digits_Y, negative, digits_W, num_digits, truth_negative):
  """int(digits at int_digits_Y) with the sign == the truth (digit strings, leading zeros dropped)."""
  idx = jnp.arange(c_Y.shape[0])
  value = digit_value(c_Y)
  first_nonzero = jnp.min(jnp.where(int_digits_Y & (value > 0), idx, c_Y.shape[0]))
  significant = int_digits_Y & (idx >= first_nonzero)
  rank = jnp.clip(jnp.cumsum(significant) - 1, 0, MAX_DIGITS - 1)
  same = jnp.all(jnp.where(significant, digits_W[rank] == value, True))
  sign_ok = (num_digits == 0) | (negative == truth_negative)
  return same & (jnp.sum(significant) == num_digits) & sign_ok


def _last_number(c_Y):
  """Span of the last `-?\\$?\\d[\\d,]*(?:\\.\\d+)?|-?\\$?\\.\\d+` match in `re.findall` order."""
  size = c_Y.shape[0]
  idx = jnp.arange(size)
  read = lambda pos: c_Y[jnp.minimum(pos, size - 1)]
  digit = digit_value(c_Y) >= 0
  is_digit = lambda pos: digit[jnp.minimum(pos, size - 1)]
  q = idx + (c_Y == ord("-"))
  q = q + (read(q) == ord("$"))  # the prefix `-?\$?` is forced by the characters (no backtracking helps)
  digit_run_end = next_index(~digit)
  int_end = next_index(~(digit | (c_Y == ord(","))))[jnp.minimum(q, size - 1)]
  with_fraction = (read(int_end) == ord(".")) & is_digit(int_end + 1)
  end_a = jnp.where(with_fraction, digit_run_end[jnp.minimum(int_end + 1, size - 1)], int_end)
  form_a = is_digit(q)
  form_b = (read(q) == ord(".")) & is_digit(q + 1)
  end_b = digit_run_end[jnp.minimum(q + 1, size - 1)]
  return last_chain_match(form_a | form_b, jnp.where(form_a, end_a, end_b))


def _row_reward(chars_X, digits_W, num_digits, truth_negative, answer_format: str):
  c = pad_row(chars_X)
  plain = answer_format == "plain"
  found, a, b = last_boxed(c)
  keep = in_span(a, b, c.shape[0]) & ~one_of(c, ", $")
  ok, negative, int_digits = _number(c, keep, zero_fraction=plain, empty_int_is_zero=False)
  if plain:
    start, end = _last_number(c)
    keep_n = in_span(start, end, c.shape[0]) & ~one_of(c, ",$")
    ok_n, negative_n, int_digits_n = _number(c, keep_n, zero_fraction=True, empty_int_is_zero=True)
    ok = jnp.where(found, ok, (start >= 0) & ok_n)
    negative = jnp.where(found, negative, negative_n)
    int_digits = jnp.where(found, int_digits, int_digits_n)
  else:
    ok = found & ok
  return ok & _equals_truth(c, int_digits, negative, digits_W, num_digits, truth_negative)


def arith_rewards(chars_BxX, length_B, truth: ArithTruth, answer_format: str = "boxed"):
  """float32 [B]: `arith_reward` ("boxed") or `final_number_reward` ("plain") of each row's text.
  chars_BxX / length_B from `token_text.response_chars` (length_B is implied by the PAD and unused)."""
  del length_B
  if answer_format not in ANSWER_FORMATS:
    raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
  row = lambda *args: _row_reward(*args, answer_format=answer_format)
  ok_B = jax.vmap(row)(chars_BxX, truth.digits_BxW, truth.num_digits_B, truth.negative_B)
  return ok_B.astype(jnp.float32)
