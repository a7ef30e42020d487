"""Hand-labelled (prediction, gold, expected) equivalence cases, and the registry's reward functions.

Deliberate choices (documented in extract.py / math_verify_check.py):
  * percent: `50\\%` == `50` (the fast path drops `%`) and math-verify also accepts `0.5` for `50\\%`.
  * units: `5 \\text{ cm}` == `5` (units are ignored, not converted: `5 m` == `5 cm` too).
  * `(3,4)` is read as an interval/ordered pair: order matters, `(4,3)` != `(3,4)`; comma lists
    without brackets (`1,2,3`) are compared as sets by math-verify, so `3,2,1` == `1,2,3`.
"""
import pytest

from simko_jax.rewards.math_verify_check import boxed_math_reward, math_equivalent
from simko_jax.rewards.registry import arith_reward, compute_reward, gsm8k_reward

CASES = [
    # fractions
    ("\\frac12", "0.5", True), ("\\dfrac{1}{2}", "\\frac{1}{2}", True), ("0.5", "\\frac{1}{2}", True),
    ("\\frac{2}{4}", "\\frac{1}{2}", True), ("\\frac{1}{3}", "0.33", False), ("1/2", "\\frac{1}{2}", True),
    # radicals
    ("2\\sqrt{2}", "\\sqrt{8}", True), ("\\sqrt{8}", "2\\sqrt{2}", True), ("2\\sqrt{3}", "\\sqrt{8}", False),
    # intervals
    ("(1,2]", "(1,2]", True), ("(1,2)", "(1,2]", False), ("[1,2]", "(1,2]", False),
    ("(-\\infty, 3)", "(-\\infty,3)", True),
    # tuples / ordered pairs
    ("(3,4)", "(3, 4)", True), ("(4,3)", "(3,4)", False), ("(1, -2, 3)", "(1,-2,3)", True),
    # units
    ("5 \\text{ cm}", "5", True), ("5", "5 \\text{ cm}", True), ("6 \\text{ cm}", "5", False),
    # multiple choice
    ("\\text{(B)}", "B", True), ("(B)", "\\text{(B)}", True), ("B", "\\text{(B)}", True),
    ("C", "\\text{(B)}", False),
    # percentages (deliberate: percent sign ignored / percent == fraction)
    ("50\\%", "50", True), ("50", "50\\%", True), ("0.5", "50\\%", True), ("40\\%", "50", False),
    # negatives
    ("-3", "-3", True), ("3", "-3", False), ("-\\frac{1}{2}", "-0.5", True),
    # thousands separators
    ("1,000", "1000", True), ("1000", "1,000", True), ("10,000", "1000", False),
    # misc
    ("x=5", "5", True), ("\\frac{\\pi}{2}", "\\pi/2", True), ("90^\\circ", "90", True),
    ("3,2,1", "1,2,3", True), ("", "1", False), ("\\text{Monday}", "\\text{Monday}", True),
    ("(-\\infty, 0) \\cup \\{1\\}", "(-\\infty, 0) \\cup\\{1\\}$.", True), ("\\$5.00", "5", True),
]


@pytest.mark.parametrize("pred, gold, expected", CASES)
def test_math_equivalent(pred, gold, expected):
  assert math_equivalent(pred, gold) is expected


def test_boxed_math_reward_uses_last_box():
  assert boxed_math_reward("first \\boxed{2}, final \\boxed{\\frac{1}{2}}", "0.5") == 1.0
  assert boxed_math_reward("final \\boxed{2}", "0.5") == 0.0
  assert boxed_math_reward("the answer is 0.5", "0.5") == 0.0  # no box, no reward
  assert boxed_math_reward("\\boxed{" + "9" * 5000 + "}", "1") == 0.0  # too long for sympy: rejected


@pytest.mark.parametrize("response, gold, expected", [
    ("... #### 18", "18", 1.0), ("so \\boxed{1,200}", "1200", 1.0), ("she pays $1,200.00.", "1200", 1.0),
    ("#### 17", "18", 0.0), ("nothing", "18", 0.0), ("#### 3", "blah\n#### 3", 1.0), ("#### -4", "-4", 1.0),
])
def test_gsm8k_reward(response, gold, expected):
  assert gsm8k_reward(response, gold) == expected


def test_arith_reward():
  assert arith_reward("so \\boxed{-12}", "-12") == 1.0
  assert arith_reward("so \\boxed{1,234}", "1234") == 1.0
  assert arith_reward("so \\boxed{12.0}", "12") == 0.0  # integer task: exact integer literal required
  assert arith_reward("12", "12") == 0.0


def test_compute_reward_dispatch():
  assert compute_reward("\\boxed{\\frac12}", "0.5", "TianHongZXY/MATH") == 1.0
  assert compute_reward("#### 5", "5", "openai/gsm8k") == 1.0
