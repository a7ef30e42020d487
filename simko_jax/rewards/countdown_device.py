"""The "countdown" reward on device: `countdown_check.countdown_reward` over the code points of
`token_text.response_chars`, equal to it reward for reward.

    truth = countdown_truth(ground_truth_json_strings)           # host, once per prompt draw
    rewards_B = countdown_rewards(chars_BxX, length_B, truth)

Steps, each the host's (tests/rewards/test_countdown_device.py compares >= 10,000 responses):
  1. expression = the last `<answer>(.*?)</answer>` match in `re.findall` order (DOTALL), else the last boxed
     content (`text_spans.last_boxed`); cut at the first '='; `strip()`, `strip("$")`, `strip()`.
  2. empty or longer than MAX_EXPRESSION_CHARS (300) code points -> 0.
  3. the host's `str.replace` chain, as passes over a [301] buffer: one pass for
     \\times \\cdot \\div × ÷ x X (no replacement can create or break another's match: each pattern has one
     backslash, at its start, and the results '*' '/' occur in none), then \\left, then \\right (removing
     \\left can create \\right, "\\ri\\leftght"), then \\( and \\) together.
  4. one `lax.scan` over the 301 characters: digit runs (Unicode `\\d`) are literals, whitespace is skipped,
     + - * / ( ) drive an operator-precedence evaluator (the innermost level's pending sum and product in
     the carry, enclosing levels on a fixed [34, 6] stack: '(' pushes, ')' pops; deeper than MAX_DEPTH = 32
     is an error, as on the host), anything else is an error. The grammar's alternation (operand, operator,
     operand, ...) is one boolean, so every error of the recursive-descent parser is an error here and
     vice versa. Literals must be a sub-multiset of the given numbers.
  5. exact rationals as unreduced int64 numerator/denominator pairs. No overflow for any expression that
     passes step 4: with k <= N literals x_i, every intermediate numerator and denominator is at most
     2^(k-1) * prod(max(x_i, 1)) (height(a +- b) <= 2 height(a) height(b), height(a * b), height(a / b)
     <= height(a) height(b)), and `countdown_truth` refuses a problem whose bound 2^(N-1) * prod(max(|n|, 1))
     reaches 2^61. Literals saturate at 2^62 (never a given number); the final value p/q equals the target
     iff q | p and p // q == target (no multiplication). int64 is used inside `jax.enable_x64` only; inputs
     and outputs are int32 / float32.
"""

from __future__ import annotations

import json
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from simko_jax.rewards.char_classes import digit_value, is_space
from simko_jax.rewards.countdown_check import MAX_DEPTH, MAX_EXPRESSION_CHARS
from simko_jax.rewards.text_spans import last_boxed, last_chain_match, matches_at, next_index, pad_row, trim

BOUND = 2 ** 61  # every exact intermediate stays under it (module docstring, step 5)
LIMIT = 2 ** 62  # literals saturate here: above BOUND, so never a given number
_LEVELS = MAX_DEPTH + 2  # level 0 plus 32 nested levels, plus one slot that only an error reaches
_OPEN_TAG, _CLOSE_TAG = "<answer>", "</answer>"


class CountdownTruth(NamedTuple):
  """Problems as arrays; int64 values as (high, low) int32 halves, v = high * 2^31 + low:
    numbers_BxNx2  int32 [B, N, 2]  the given numbers (rows with fewer: -1, which no literal equals)
    target_Bx2     int32 [B, 2]     the target, clipped to +-2^61 (no valid expression reaches +-2^61)"""
  numbers_BxNx2: jax.Array
  target_Bx2: jax.Array


def _split(values) -> np.ndarray:
  values = np.asarray(values, np.int64)
  return np.stack([values >> 31, values & (2 ** 31 - 1)], axis=-1).astype(np.int32)


def countdown_truth(ground_truths: Sequence[str]) -> CountdownTruth:
  """Host: ground-truth JSON strings (`countdown_ground_truth`) -> `CountdownTruth` (numpy).
  ValueError for an unreadable one, or for a problem too large for exact int64 arithmetic (module doc)."""
  problems = []
  for truth in ground_truths:
    try:
      problem = json.loads(truth)
      numbers, target = [int(n) for n in problem["numbers"]], int(problem["target"])
    except (ValueError, KeyError, TypeError) as err:
      raise ValueError(f"bad countdown ground truth {truth!r}: {err}") from None
    bound = 2 ** max(len(numbers) - 1, 0) * int(np.prod([max(abs(n), 1) for n in numbers], dtype=object))
    if bound >= BOUND:
      raise ValueError(f"countdown problem {truth!r} is too large for exact int64 arithmetic on device "
                       f"(2^(N-1) * prod(numbers) = {bound} >= 2^61); use the host reward callback")
    problems.append((numbers, max(-BOUND, min(BOUND, target))))
  width = max([len(n) for n, _ in problems], default=1)
  numbers = np.full((len(problems), width), -1, np.int64)
  for row, (values, _) in enumerate(problems):
    numbers[row, :len(values)] = values
  return CountdownTruth(_split(numbers), _split([t for _, t in problems]))


def _expression_span(c_Y):
  """Step 1: the expression's span [a, b) in the padded row (a == b: none)."""
  size = c_Y.shape[0]
  opens, closes = matches_at(c_Y, _OPEN_TAG), matches_at(c_Y, _CLOSE_TAG)
  close_after = next_index(closes)[jnp.minimum(jnp.arange(size) + len(_OPEN_TAG), size - 1)]
  start, end = last_chain_match(opens & (close_after < size), close_after + len(_CLOSE_TAG))
  _, box_a, box_b = last_boxed(c_Y)
  tagged = start >= 0
  a = jnp.where(tagged, start + len(_OPEN_TAG), box_a)
  b = jnp.where(tagged, end - len(_CLOSE_TAG), box_b)
  b = jnp.minimum(b, next_index(c_Y == ord("="))[jnp.minimum(a, size - 1)])
  a, b = trim(a, b, is_space(c_Y))
  a, b = trim(a, b, c_Y == ord("$"))
  return trim(a, b, is_space(c_Y))


def _delete(e_E, deleted_E, replace_E):
  """Drop deleted positions (and keep PAD at the end), writing replace_E (>= 0) where given."""
  e_E = jnp.where(replace_E >= 0, replace_E, e_E)
  keep = ~deleted_E & (e_E >= 0)
  dest = jnp.where(keep, jnp.cumsum(keep) - 1, e_E.shape[0])
  return jnp.full_like(e_E, -1).at[dest].set(e_E, mode="drop")


def _replace_pass(e_E, rules):
  """Every (pattern, replacement) at once; a match's first character becomes the replacement (or is
  deleted for ''), the rest of the match is deleted."""
  deleted = jnp.zeros(e_E.shape, bool)
  replace = jnp.full(e_E.shape, -1, jnp.int32)
  for pattern, replacement in rules:
    hit = matches_at(e_E, pattern)
    for d in range(1, len(pattern)):
      deleted |= jnp.pad(hit[:-d], (d, 0))
    if replacement:
      replace = jnp.where(hit, ord(replacement), replace)
    else:
      deleted |= hit
  return _delete(e_E, deleted, replace)


_PASSES = ([("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("×", "*"), ("÷", "/"), ("x", "*"), ("X", "*")],
           [("\\left", "")], [("\\right", "")], [("\\(", "("), ("\\)", ")")])


def _rational(op, a, b):
  """a op b for op in 1 '+', 2 '-', 3 '*', 4 '/' on (num, den) pairs, den > 0 kept (unreduced; a zero
  denominator only after a division by zero)."""
  (an, ad), (bn, bd) = a, b
  num = jnp.where(op == 1, an * bd + bn * ad, jnp.where(op == 2, an * bd - bn * ad,
                                                        jnp.where(op == 3, an * bn, an * bd)))
  den = jnp.where(op == 4, ad * bn, ad * bd)
  flip = den < 0
  return jnp.where(flip, -num, num), jnp.where(flip, -den, den)


class _Level(NamedTuple):
  """One nesting level: `sum sum_op (product prod_op ...)`; ops 0 none, 1 '+', 2 '-', 3 '*', 4 '/'."""
  sum_num: jax.Array
  sum_den: jax.Array
  sum_op: jax.Array
  prod_num: jax.Array
  prod_den: jax.Array
  prod_op: jax.Array


class _State(NamedTuple):
  depth: jax.Array       # int32: open parentheses
  expect: jax.Array      # bool: an operand ('(' or a literal) must come next
  error: jax.Array       # bool: not in the grammar, too deep, division by zero, or a number not given
  literal: jax.Array     # int64: value of the digit run being read (saturating at LIMIT)
  in_literal: jax.Array  # bool
  used_N: jax.Array      # int32 [N]: literals equal to each given number
  level: _Level          # the innermost open level (int64 scalars)
  stack_Lx6: jax.Array   # int64 [L, 6]: the enclosing levels, stack_Lx6[k] = level k


def _apply_factor(level: _Level, factor):
  """Multiply / divide the level's product by `factor` (or start it). Returns (level, divided by zero)."""
  new = _rational(level.prod_op, (level.prod_num, level.prod_den), factor)
  start = level.prod_op == 0
  level = level._replace(prod_num=jnp.where(start, factor[0], new[0]), prod_den=jnp.where(start, factor[1], new[1]),
                         prod_op=jnp.zeros_like(level.prod_op))
  return level, (new[1] == 0) & ~start


def _finish(level: _Level):
  """The level's value: its pending sum op applied to its product."""
  term = (level.prod_num, level.prod_den)
  folded = _rational(level.sum_op, (level.sum_num, level.sum_den), term)
  start = level.sum_op == 0
  return jnp.where(start, term[0], folded[0]), jnp.where(start, term[1], folded[1])


def _select(when, new, old):
  return jax.tree.map(lambda a, b: jnp.where(when, a, b), new, old)


def _step(s: _State, ch, numbers_N):
  digit = digit_value(ch)
  # A digit run ends at any other character: it is a factor of the current level.
  flush = s.in_literal & (digit < 0)
  matches = numbers_N == s.literal
  level, by_zero = _apply_factor(s.level, (s.literal, jnp.int64(1)))
  s = s._replace(level=_select(flush, level, s.level), error=s.error | (flush & (by_zero | ~jnp.any(matches))),
                 used_N=s.used_N + (flush & matches).astype(jnp.int32), expect=s.expect & ~flush,
                 in_literal=s.in_literal & ~flush)
  # Digit: extend or start a literal (starting one needs an operand slot).
  grown = jnp.where(s.literal > (LIMIT - 9) // 10, LIMIT, s.literal * 10 + digit)
  s = s._replace(error=s.error | ((digit >= 0) & ~s.in_literal & ~s.expect),
                 literal=jnp.where(digit >= 0, jnp.where(s.in_literal, grown, digit.astype(jnp.int64)), s.literal),
                 in_literal=s.in_literal | (digit >= 0))
  is_open, is_close = ch == ord("("), ch == ord(")")
  add_op = jnp.where(ch == ord("+"), 1, jnp.where(ch == ord("-"), 2, 0)).astype(jnp.int64)
  mul_op = jnp.where(ch == ord("*"), 3, jnp.where(ch == ord("/"), 4, 0)).astype(jnp.int64)
  operator = (add_op > 0) | (mul_op > 0)
  other = ~(is_space(ch) | (ch < 0) | (digit >= 0) | is_open | is_close | operator)
  error = s.error | other | (is_open & ~s.expect) | ((operator | is_close) & s.expect)
  error |= (is_close & (s.depth == 0)) | (is_open & (s.depth >= MAX_DEPTH))
  # '(' pushes the current level and starts an empty one; '+'/'-' folds the product into the sum;
  # '*'/'/' waits for the next factor; ')' pops the enclosing level and multiplies the closed value in.
  cur = s.level
  value = _finish(cur)
  folded = cur._replace(sum_num=value[0], sum_den=value[1], sum_op=add_op, prod_op=jnp.zeros_like(cur.prod_op))
  cur = _select(add_op > 0, folded, _select(mul_op > 0, cur._replace(prod_op=mul_op), cur))
  slots = jnp.arange(_LEVELS)
  push = (slots == jnp.minimum(s.depth, _LEVELS - 1)) & is_open
  stack = jnp.where(push[:, None], jnp.stack(cur)[None, :], s.stack_Lx6)
  empty = _Level(*(jnp.int64(v) for v in (0, 1, 0, 0, 1, 0)))
  parent = _Level(*jnp.sum(jnp.where((slots == s.depth - 1)[:, None], s.stack_Lx6, 0), axis=0))
  closed, by_zero = _apply_factor(parent, value)
  cur = _select(is_open, empty, _select(is_close, closed, cur))
  depth = s.depth + is_open.astype(jnp.int32) - is_close.astype(jnp.int32)
  return s._replace(level=cur, stack_Lx6=stack, depth=jnp.clip(depth, 0, _LEVELS - 1),
                    error=error | (is_close & by_zero),
                    expect=jnp.where(is_open | operator, True, jnp.where(is_close, False, s.expect)))


def _evaluate(e_E, numbers_N, target):
  """Steps 4-5 on one expression buffer: True iff valid and equal to the target (int64 inputs)."""
  empty = _Level(*(jnp.int64(v) for v in (0, 1, 0, 0, 1, 0)))
  init = _State(jnp.int32(0), jnp.array(True), jnp.array(False), jnp.int64(0), jnp.array(False),
                jnp.zeros(numbers_N.shape, jnp.int32), empty, jnp.zeros((_LEVELS, 6), jnp.int64))
  s, _ = jax.lax.scan(lambda s, ch: (_step(s, ch, numbers_N), None), init, jnp.append(e_E, -1))
  error = s.error | s.expect | (s.depth != 0) | s.in_literal
  available = jnp.sum(numbers_N[:, None] == numbers_N[None, :], axis=1)
  error |= jnp.any(s.used_N > available)
  num, den = _finish(s.level)
  safe = jnp.where(den == 0, 1, den)
  return ~error & (den != 0) & (num % safe == 0) & (num // safe == target)


def _row_reward(chars_X, numbers_Nx2, target_2):
  c = pad_row(chars_X)
  a, b = _expression_span(c)
  size = MAX_EXPRESSION_CHARS + 1
  pos = a + jnp.arange(size)
  e = jnp.where(pos < b, c[jnp.minimum(pos, c.shape[0] - 1)], -1)
  for rules in _PASSES:
    e = _replace_pass(e, rules)
  with jax.enable_x64(True):
    join = lambda v: (v[..., 0].astype(jnp.int64) << 31) | v[..., 1].astype(jnp.int64)
    ok = _evaluate(e, join(numbers_Nx2), join(target_2))
  return ok & (b > a) & (b - a <= MAX_EXPRESSION_CHARS)


def countdown_rewards(chars_BxX, length_B, truth: CountdownTruth):
  """float32 [B]: `countdown_reward` of each row's text (chars_BxX / length_B from `response_chars`;
  length_B is implied by the PAD and unused)."""
  del length_B
  ok_B = jax.vmap(_row_reward)(chars_BxX, truth.numbers_BxNx2, truth.target_Bx2)
  return ok_B.astype(jnp.float32)
