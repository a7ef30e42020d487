"""Math-equivalence checking with math-verify, behind a cheap normalised-string fast path.

`math_equivalent(pred_answer, gold)` decides whether an extracted answer (the content of the response's
last `\\boxed{}`) equals the ground truth:
  1. fast path: `normalize_answer(pred) == normalize_answer(gold)` (see `extract.py` for the rules);
  2. otherwise gold is parsed as `$gold$` and the prediction as `\\boxed{pred}` with
     `LatexExtractionConfig` + `ExprExtractionConfig`, and compared with `math_verify.verify`.

Timeouts: math-verify interrupts itself with `signal.alarm`, which only works in a process's main thread.
In the main thread (e.g. a `VerifierPool` worker) we pass `inner_timeout_s` seconds to `parse`/`verify`
so most slow sympy work is cut short cheaply; in any other thread its own timeout is disabled (it would
raise) and the caller must bound the time itself. Work stuck inside C code (huge integer powers) cannot
be interrupted by a signal at all: `VerifierPool` kills the worker for that. Never call these functions on
untrusted text in the trainer's own process without such an outer bound.

The checker never evaluates text with `eval`/`exec`; math-verify parses LaTeX with its own grammar.
"""

from __future__ import annotations

import logging
import threading

from simko_jax.rewards.extract import extract_math_answer_chain, last_boxed_content, normalize_answer

# Seconds for math-verify's own signal-based timeouts (integers: signal.alarm resolution).
_INNER_TIMEOUT_S = 3
# Gold/prediction strings longer than this are not handed to sympy (their parse cost is unbounded).
MAX_ANSWER_CHARS = 1000

logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every failed parse at WARNING


def set_inner_timeout(seconds: int | None) -> None:
  """Set math-verify's own per-call timeout (whole seconds; None or 0 disables it)."""
  global _INNER_TIMEOUT_S
  _INNER_TIMEOUT_S = int(seconds) if seconds else None


def _inner_timeout() -> int | None:
  if threading.current_thread() is not threading.main_thread():
    return None  # signal.alarm is main-thread only; math-verify raises otherwise.
  return _INNER_TIMEOUT_S


def _extraction_configs():
  from math_verify import ExprExtractionConfig, LatexExtractionConfig
  return [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


_GOLD_CACHE: dict[str, tuple] = {}
_GOLD_CACHE_SIZE = 8192


def _parse_gold(gold: str) -> tuple:
  """Parsed gold, cached (the same ground truth is checked once per sampled response). Failed parses
  (possibly a timeout under load) are not cached."""
  cached = _GOLD_CACHE.get(gold)
  if cached is not None:
    return cached
  from math_verify import parse
  parsed = parse("$" + gold + "$", _extraction_configs(), parsing_timeout=_inner_timeout())
  if not parsed:  # some golds only parse inside a box (e.g. with stray `$`)
    parsed = parse("\\boxed{" + gold + "}", _extraction_configs(), parsing_timeout=_inner_timeout())
  if parsed:
    if len(_GOLD_CACHE) >= _GOLD_CACHE_SIZE:
      _GOLD_CACHE.clear()
    _GOLD_CACHE[gold] = tuple(parsed)
  return tuple(parsed)


def _parse_prediction(pred: str) -> list:
  from math_verify import parse
  return parse("\\boxed{" + pred + "}", _extraction_configs(), parsing_timeout=_inner_timeout())


def _strip_dollars(answer: str) -> str:
  """Stray `$` (math-mode delimiters or currency) and a trailing period break LaTeX parsing."""
  return answer.replace("\\$", "").replace("$", "").strip().rstrip(".").strip()


def math_equivalent(pred_answer: str | None, gold: str | None) -> bool:
  """True iff the extracted answer `pred_answer` is mathematically equivalent to `gold` (see module doc)."""
  if pred_answer is None or gold is None:
    return False
  pred_answer, gold = str(pred_answer).strip(), str(gold).strip()
  if not pred_answer or not gold:
    return False
  pred_norm, gold_norm = normalize_answer(pred_answer), normalize_answer(gold)
  if pred_norm and pred_norm == gold_norm:
    return True
  if len(pred_answer) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
    return False
  from math_verify import verify
  try:
    gold_parsed = list(_parse_gold(_strip_dollars(gold)))
    pred_parsed = _parse_prediction(_strip_dollars(pred_answer))
    if not gold_parsed or not pred_parsed:
      return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=_inner_timeout()))
  except Exception:  # noqa: BLE001 - any checker failure (incl. its TimeoutException) means "not verified"
    return False


def boxed_math_reward(response: str, ground_truth: str) -> float:
  """1.0 iff the last `\\boxed{}` of `response` is math-equivalent to `ground_truth`, else 0.0."""
  return 1.0 if math_equivalent(last_boxed_content(response), ground_truth) else 0.0


def chained_math_reward(response: str, ground_truth: str) -> float:
  """1.0 iff the answer found by `extract_math_answer_chain` (last `\\boxed{}`, else "the answer is",
  else the last number: the SimKO authors' extraction) is math-equivalent to `ground_truth`."""
  return 1.0 if math_equivalent(extract_math_answer_chain(response), ground_truth) else 0.0
