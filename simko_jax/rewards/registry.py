"""Reward functions keyed by data source.

A reward function is a pure, picklable, module-level `fn(response: str, ground_truth: str) -> float`
returning 0.0 or 1.0 (picklable because `VerifierPool` ships it to worker processes by reference).

Lookup (`get_reward_fn`) is case-insensitive: an exact registered name wins; otherwise a name containing a
known keyword (e.g. "TianHongZXY/MATH", "TianHongZXY/AIME2025") maps by `_KEYWORD_RULES`; otherwise the
`default` name if given; otherwise KeyError listing the known names.

Built-in functions:
  boxed_math_reward  last `\\boxed{}` vs gold, string fast path + math-verify (MATH, AIME, AMC, ...)
  chained_math_reward  the same check on boxed -> "the answer is" -> last number (the SimKO authors'
                     extraction); chosen for every MATH-type source by `math_extraction=
                     "boxed_answer_is_number"` (`config.rewards.math_extraction`)
  gsm8k_reward       `#### X` / boxed / last number, compared as exact decimals with the gold number
  arith_reward       last boxed content must be exactly the integer ground truth (procedural "arith")
  countdown_reward   Countdown expression check (see countdown_check.py)
"""

from __future__ import annotations

import pickle
import re
from decimal import Decimal, InvalidOperation
from typing import Callable

from simko_jax.rewards.countdown_check import countdown_reward
from simko_jax.rewards.extract import (extract_gsm8k_answer, gold_from_gsm8k_answer, last_boxed_content, last_number,
                                       normalize_answer)
from simko_jax.rewards.math_verify_check import boxed_math_reward, chained_math_reward

RewardFn = Callable[[str, str], float]
# config.rewards.math_extraction -> the reward fn that replaces `boxed_math_reward` for MATH-type sources.
MATH_EXTRACTIONS: dict[str, RewardFn] = {"boxed": boxed_math_reward,
                                         "boxed_answer_is_number": chained_math_reward}


def _as_decimal(text: str | None) -> Decimal | None:
  if text is None:
    return None
  cleaned = text.replace(",", "").replace("$", "").replace("\\%", "").replace("%", "").strip().rstrip(".")
  if not re.fullmatch(r"-?\d+(\.\d+)?|-?\.\d+", cleaned):
    return None
  try:
    return Decimal(cleaned)
  except InvalidOperation:
    return None


def gsm8k_reward(response: str, ground_truth: str) -> float:
  """1.0 iff the GSM8K-style final answer equals the gold number (exact decimal comparison)."""
  gold = gold_from_gsm8k_answer(ground_truth) if "####" in ground_truth else ground_truth
  pred = extract_gsm8k_answer(response)
  pred_num, gold_num = _as_decimal(pred), _as_decimal(gold)
  if pred_num is not None and gold_num is not None:
    return 1.0 if pred_num == gold_num else 0.0
  return 1.0 if pred is not None and normalize_answer(pred) == normalize_answer(gold) != "" else 0.0


def arith_reward(response: str, ground_truth: str) -> float:
  """1.0 iff the last boxed content is exactly the integer `ground_truth` (commas/spaces ignored)."""
  boxed = last_boxed_content(response)
  if boxed is None:
    return 0.0
  boxed = boxed.replace(",", "").replace(" ", "").replace("$", "")
  if not re.fullmatch(r"-?\d{1,50}", boxed):
    return 0.0
  return 1.0 if int(boxed) == int(ground_truth.strip()) else 0.0


def final_number_reward(response: str, ground_truth: str) -> float:
  """1.0 iff the last number in the response equals the integer `ground_truth` (plain-answer tasks
  for small models that cannot yet produce `\\boxed{}`; a `\\boxed{}` answer still counts)."""
  boxed = last_boxed_content(response)
  answer = boxed if boxed is not None else last_number(response)
  if answer is None:
    return 0.0
  answer = answer.replace(",", "").replace(" ", "").replace("$", "")
  if not re.fullmatch(r"-?\d{1,50}(\.0+)?", answer):
    return 0.0
  return 1.0 if int(answer.split(".")[0]) == int(ground_truth.strip()) else 0.0


_REGISTRY: dict[str, RewardFn] = {}
_MATH_SOURCES = ("math", "lighteval/math", "digitallearninggmbh/math-lighteval", "math500", "math_test",
                 "aime", "aime24", "aime25", "amc", "amc23", "minerva", "minerva_math", "olympiadbench",
                 "simplelr_abel", "hendrycks_math")
# (substring of the lower-cased data source, registered name) tried in order for unregistered names.
_KEYWORD_RULES = (("gsm8k", "gsm8k"), ("countdown", "countdown"), ("aime", "aime"), ("amc", "amc"),
                  ("minerva", "minerva"), ("olympiad", "olympiadbench"), ("math", "math"))


def register_reward(name: str, fn: RewardFn, *, overwrite: bool = False) -> None:
  """Register `fn` for data source `name` (case-insensitive). `fn` must be picklable (module-level)."""
  key = name.lower()
  if key in _REGISTRY and not overwrite and _REGISTRY[key] is not fn:
    raise ValueError(f"reward for data source {name!r} already registered; pass overwrite=True")
  try:
    pickle.dumps(fn)
  except Exception as err:  # noqa: BLE001
    raise TypeError(f"reward fn for {name!r} must be picklable (a module-level function): {err}") from err
  _REGISTRY[key] = fn


def unregister_reward(name: str) -> None:
  """Remove a registered data source (no error if absent)."""
  _REGISTRY.pop(name.lower(), None)


def registered_sources() -> list[str]:
  """Sorted registered data-source names."""
  return sorted(_REGISTRY)


def get_reward_fn(data_source: str, *, default: str | None = None,
                  math_extraction: str = "boxed") -> RewardFn:
  """Reward fn for `data_source` (exact name, then keyword rules, then `default`); KeyError if none.
  A MATH-type source (one resolving to `boxed_math_reward`) gets `MATH_EXTRACTIONS[math_extraction]`."""
  if math_extraction not in MATH_EXTRACTIONS:
    raise ValueError(f"math_extraction {math_extraction!r} is not one of {list(MATH_EXTRACTIONS)}")
  fn = _lookup(data_source, default)
  return MATH_EXTRACTIONS[math_extraction] if fn is boxed_math_reward else fn


def _lookup(data_source: str, default: str | None) -> RewardFn:
  key = (data_source or "").lower()
  if key in _REGISTRY:
    return _REGISTRY[key]
  for keyword, name in _KEYWORD_RULES:
    if keyword in key and name in _REGISTRY:
      return _REGISTRY[name]
  if default is not None:
    return _lookup(default, None)
  raise KeyError(f"no reward function for data source {data_source!r}; registered: "
                 f"{registered_sources()} (use register_reward(name, fn) or pass default=...)")


def compute_reward(response: str, ground_truth: str, data_source: str, *,
                   default: str | None = None, math_extraction: str = "boxed") -> float:
  """In-process reward (no timeout protection: use VerifierPool for untrusted model output)."""
  fn = get_reward_fn(data_source, default=default, math_extraction=math_extraction)
  return float(fn(response, ground_truth))


for _name in _MATH_SOURCES:
  register_reward(_name, boxed_math_reward)
register_reward("gsm8k", gsm8k_reward)
register_reward("openai/gsm8k", gsm8k_reward)
register_reward("arith", arith_reward)
register_reward("arith_plain", final_number_reward)
register_reward("countdown", countdown_reward)
