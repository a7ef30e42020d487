"""Countdown verifier: a tiny recursive-descent parser over `+ - * /` and parentheses. Never uses eval.

Task: given numbers (e.g. [3, 7, 25, 50]) and a target (e.g. 82), write an arithmetic expression that uses
each given number at most once and evaluates to the target.

Ground truth is a JSON string `{"numbers": [int, ...], "target": int}` (see `countdown_ground_truth`).
The response's expression is the content of its last `<answer>...</answer>` tag, else of its last
`\\boxed{}`; anything after a first `=` is ignored (`(3+5)*3 = 24` -> `(3+5)*3`).

Grammar (non-negative integer literals; no unary minus, no implicit multiplication, `\\times`/`x`/`\\cdot`
are read as `*` and `\\div` as `/`):
    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := INT | '(' expr ')'
Arithmetic is exact (`fractions.Fraction`); division by zero makes the expression invalid. Expressions
longer than `MAX_EXPRESSION_CHARS` or nested deeper than `MAX_DEPTH` are rejected before evaluation, and the
literals must be a sub-multiset of the given numbers (checked before any arithmetic), so evaluation cost
is bounded.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from fractions import Fraction

from simko_jax.rewards.extract import last_boxed_content

MAX_EXPRESSION_CHARS = 300
MAX_DEPTH = 32
_TOKEN_RE = re.compile(r"\s*(?:(\d+)|(.))")


class CountdownParseError(ValueError):
  """The expression is not in the Countdown grammar (or uses a number not given)."""


def countdown_ground_truth(numbers: list[int], target: int) -> str:
  """Serialise a Countdown problem's ground truth: '{"numbers": [...], "target": T}'."""
  return json.dumps({"numbers": [int(n) for n in numbers], "target": int(target)})


def _tokenize(expression: str) -> list[int | str]:
  text = (expression.replace("\\times", "*").replace("\\cdot", "*").replace("\\div", "/")
          .replace("×", "*").replace("÷", "/").replace("x", "*").replace("X", "*"))
  text = text.replace("\\left", "").replace("\\right", "").replace("\\(", "(").replace("\\)", ")")
  tokens: list[int | str] = []
  for match in _TOKEN_RE.finditer(text):
    number, symbol = match.groups()
    if number is not None:
      tokens.append(int(number))
    elif symbol is not None and not symbol.isspace():
      if symbol not in "+-*/()":
        raise CountdownParseError(f"unexpected character {symbol!r}")
      tokens.append(symbol)
  return tokens


class _Parser:
  """Recursive-descent evaluator over a token list; values are exact Fractions."""

  def __init__(self, tokens: list[int | str]):
    self.tokens = tokens
    self.pos = 0
    self.depth = 0

  def _peek(self):
    return self.tokens[self.pos] if self.pos < len(self.tokens) else None

  def parse(self) -> Fraction:
    value = self._expr()
    if self.pos != len(self.tokens):
      raise CountdownParseError(f"unexpected token {self._peek()!r}")
    return value

  def _expr(self) -> Fraction:
    value = self._term()
    while self._peek() in ("+", "-"):
      op = self.tokens[self.pos]
      self.pos += 1
      rhs = self._term()
      value = value + rhs if op == "+" else value - rhs
    return value

  def _term(self) -> Fraction:
    value = self._factor()
    while self._peek() in ("*", "/"):
      op = self.tokens[self.pos]
      self.pos += 1
      rhs = self._factor()
      if op == "*":
        value = value * rhs
      elif rhs == 0:
        raise CountdownParseError("division by zero")
      else:
        value = value / rhs
    return value

  def _factor(self) -> Fraction:
    token = self._peek()
    if isinstance(token, int):
      self.pos += 1
      return Fraction(token)
    if token == "(":
      self.depth += 1
      if self.depth > MAX_DEPTH:
        raise CountdownParseError("nesting too deep")
      self.pos += 1
      value = self._expr()
      if self._peek() != ")":
        raise CountdownParseError("missing ')'")
      self.pos += 1
      self.depth -= 1
      return value
    raise CountdownParseError(f"expected a number or '(', got {token!r}")


def evaluate_countdown_expression(expression: str, numbers: list[int]) -> Fraction:
  """Exact value of `expression`; raises CountdownParseError if invalid or it uses numbers not given."""
  if len(expression) > MAX_EXPRESSION_CHARS:
    raise CountdownParseError("expression too long")
  tokens = _tokenize(expression)
  if not tokens:
    raise CountdownParseError("empty expression")
  used = Counter(t for t in tokens if isinstance(t, int))
  available = Counter(int(n) for n in numbers)
  if any(count > available[n] for n, count in used.items()):
    raise CountdownParseError(f"uses numbers not available: {dict(used - available)}")
  return _Parser(tokens).parse()


def extract_countdown_expression(response: str) -> str | None:
  """Last `<answer>..</answer>` content, else last boxed content; the part before any '='."""
  if not isinstance(response, str):
    return None
  matches = re.findall(r"<answer>(.*?)</answer>", response, flags=re.DOTALL)
  expression = matches[-1] if matches else last_boxed_content(response)
  if expression is None:
    return None
  return expression.split("=", 1)[0].strip().strip("$").strip()


def countdown_reward(response: str, ground_truth: str) -> float:
  """1.0 iff the response's expression uses a sub-multiset of the numbers and equals the target."""
  try:
    problem = json.loads(ground_truth)
    numbers, target = list(problem["numbers"]), Fraction(int(problem["target"]))
  except (ValueError, KeyError, TypeError) as err:
    raise ValueError(f"bad countdown ground truth {ground_truth!r}: {err}") from err
  expression = extract_countdown_expression(response)
  if not expression:
    return 0.0
  try:
    return 1.0 if evaluate_countdown_expression(expression, numbers) == target else 0.0
  except CountdownParseError:
    return 0.0
