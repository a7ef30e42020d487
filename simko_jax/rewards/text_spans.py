"""Span finders over ONE row of code points (callers `vmap` them over rows): the device twins of
`extract.last_boxed_content`, `re.findall`'s non-overlapping leftmost matches and `str.strip`.

A row is `chars_X` (int32 code points, PAD = -1 past its length; PAD is in no character class and equals no
character, so "the first position whose char is not X" stops at the text's end by itself). A span is a pair
of int32 positions [a, b). Every function is pure, jittable and free of sequential loops over the text
(running counts, cummin/cummax and gathers only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simko_jax.rewards.char_classes import is_alpha, is_space

_LOOKAHEAD = 8  # padding past X so that fixed-offset reads (`x[k + 7]`) stay in range


def pad_row(chars_X):
  """chars_X with PAD appended, so that reads at positions X .. X + _LOOKAHEAD - 1 are PAD."""
  return jnp.pad(chars_X, (0, _LOOKAHEAD), constant_values=-1)


def next_index(pred_Y):
  """For each k: the smallest j >= k with pred_Y[j], else len(pred_Y)."""
  idx = jnp.arange(pred_Y.shape[0])
  return jax.lax.cummin(jnp.where(pred_Y, idx, pred_Y.shape[0]), reverse=True)


def prev_index(pred_Y):
  """For each k: the largest j <= k with pred_Y[j], else -1."""
  idx = jnp.arange(pred_Y.shape[0])
  return jax.lax.cummax(jnp.where(pred_Y, idx, -1))


def matches_at(c_Y, pattern: str):
  """bool [Y]: the text at k starts with `pattern` (fixed string, len <= _LOOKAHEAD + 1)."""
  hit = jnp.ones(c_Y.shape, bool)
  for d, ch in enumerate(pattern):
    hit &= jnp.pad(c_Y[d:], (0, d), constant_values=-1) == ord(ch)
  return hit


def one_of(c_Y, chars: str):
  return jnp.isin(c_Y, jnp.array([ord(ch) for ch in chars], jnp.int32))


def trim(a, b, in_set_Y, left: bool = True, right: bool = True):
  """[a, b) without its leading (left) / trailing (right) characters in the set (`str.strip(set)`)."""
  if left:
    a = jnp.minimum(next_index(~in_set_Y)[a], b)
  if right:
    b = jnp.where(b > a, jnp.maximum(prev_index(~in_set_Y)[jnp.maximum(b - 1, 0)] + 1, a), a)
  return a, b


def in_span(a, b, size: int):
  idx = jnp.arange(size)
  return (idx >= a) & (idx < b)


def last_chain_match(match_Y, end_Y):
  """`re.findall` order: from 0, take the leftmost k with match_Y[k], resume at end_Y[k], repeat.
  Returns the last match taken: (start, end), (-1, -1) if none. No scan: each match start points to the
  next one taken after it (a fixed point for the last), and pointer doubling follows the chain in
  ceil(log2(Y)) gathers."""
  size = match_Y.shape[0]
  idx = jnp.arange(size)
  first_from = next_index(match_Y)  # the leftmost match start at or after k
  resume = jnp.minimum(end_Y, size - 1)
  following = jnp.where(end_Y < size, first_from[resume], size)
  hop = jnp.where(match_Y & (following < size), following, idx)
  for _ in range(max(1, (size - 1).bit_length())):
    hop = hop[hop]
  first = first_from[0]
  last = hop[jnp.minimum(first, size - 1)]
  found = first < size
  return jnp.where(found, last, -1), jnp.where(found, end_Y[last], -1)


def _brace_depth(c_Y):
  """Inclusive running count of unescaped '{' minus unescaped '}' (`extract._matching_brace_end`: a brace
  right after a backslash is literal; such a backslash is never itself skipped, so the rule is local)."""
  escaped = jnp.pad(c_Y[:-1], (1, 0), constant_values=-1) == ord("\\")
  delta = jnp.where(escaped, 0, (c_Y == ord("{")).astype(jnp.int32) - (c_Y == ord("}")).astype(jnp.int32))
  return jnp.cumsum(delta)


def last_boxed(c_Y):
  """`extract.last_boxed_content` on a padded row: (found, a, b), the content span already stripped.

  Candidates are `\\boxed` / `\\fbox` not followed by a letter; after spaces/tabs either a '{' whose group
  closes (content = inside, `str.strip`-ped) or a character other than '\\', '}', whitespace and '$' (the
  braceless form: the run up to whitespace or '$', trailing '.' and ',' removed). The last candidate wins.
  """
  size = c_Y.shape[0]
  idx = jnp.arange(size)
  read = lambda pos: c_Y[jnp.minimum(pos, size - 1)]
  boxed, fbox = matches_at(c_Y, "\\boxed"), matches_at(c_Y, "\\fbox")
  after = idx + jnp.where(boxed, 6, 5)
  command = (boxed | fbox) & ~is_alpha(read(after))
  i = next_index(~one_of(c_Y, " \t"))[jnp.minimum(after, size - 1)]
  depth = _brace_depth(c_Y)
  closes_min = jnp.pad(jax.lax.cummin(depth, reverse=True)[1:], (0, 1), constant_values=2 ** 30)
  braced = (read(i) == ord("{")) & (closes_min[jnp.minimum(i, size - 1)] < depth[jnp.minimum(i, size - 1)])
  first = read(i)
  braceless = (first >= 0) & ~one_of(first, "{}\\$") & ~is_space(first)
  valid = command & (braced | braceless)
  p = jnp.max(jnp.where(valid, idx, -1))
  found = p >= 0
  i_p = i[jnp.maximum(p, 0)]
  # Braced: content up to the first later position where the depth drops below the opening's.
  close = jnp.argmax((idx > i_p) & (depth < depth[jnp.minimum(i_p, size - 1)]))
  a_braced, b_braced = trim(i_p + 1, close, is_space(c_Y))
  # Braceless: the run of non-space non-'$' characters, then `.rstrip(".,")`.
  run_end = next_index(is_space(c_Y) | (c_Y == ord("$")) | (c_Y < 0))[jnp.minimum(i_p, size - 1)]
  _, b_bare = trim(i_p, run_end, one_of(c_Y, ".,"), left=False)
  is_braced = braced[jnp.maximum(p, 0)]
  a = jnp.where(is_braced, a_braced, i_p)
  b = jnp.where(is_braced, b_braced, b_bare)
  return found, jnp.where(found, a, 0), jnp.where(found, b, 0)
