"""Answer extraction / normalisation: hand-labelled cases."""
import pytest

from simko_jax.rewards.extract import (extract_gsm8k_answer, gold_from_gsm8k_answer,
                                       gold_from_math_solution, gold_from_olympiad_final_answer,
                                       last_boxed_content, last_number, normalize_answer)


@pytest.mark.parametrize("text, expected", [
    ("so \\boxed{5}.", "5"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("\\fbox{7}", "7"),
    ("answer: \\boxed 5$.", "5"),
    ("\\boxed{3} and a truncated \\boxed{4", "3"),
    ("\\boxed{ (1, 2] }", "(1, 2]"),
    ("no box here", None),
    ("\\boxedfoo{3}", None),
])
def test_last_boxed_content(text, expected):
  assert last_boxed_content(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("blah\n#### 1,234", "1234"),
    ("#### $18", "18"),
    ("The total is \\boxed{42}.", "42"),
    ("She pays $1,200.50 in total.", "1200.5"),
    ("It is -7 degrees", "-7"),
    ("nothing numeric", None),
])
def test_extract_gsm8k_answer(text, expected):
  assert extract_gsm8k_answer(text) == expected


def test_gold_extractors():
  assert gold_from_math_solution("so $x=\\boxed{\\frac{3}{4}}$.") == "\\frac{3}{4}"
  assert gold_from_gsm8k_answer("3*3=9\n#### 70,000") == "70000"
  assert gold_from_gsm8k_answer("no marker") is None
  assert gold_from_olympiad_final_answer("['$\\\\frac{1}{2}$']") == "\\frac{1}{2}"
  assert gold_from_olympiad_final_answer(["$69$", "$84$"]) == "69, 84"
  assert gold_from_olympiad_final_answer('["$(2,4)$"]') == "(2,4)"
  assert gold_from_olympiad_final_answer("[]") is None
  assert last_number("x 3.50 y") == "3.5"


@pytest.mark.parametrize("raw, expected", [
    ("5 \\text{ cm}", "5"), ("5 cm", "5"), ("90^\\circ", "90"), ("90^{\\circ}", "90"), ("50\\%", "50"),
    ("\\text{(B)}", "B"), ("(b)", "B"), ("\\dfrac{1}{2}", "\\frac{1}{2}"), ("1,000", "1000"),
    ("(1,000)", "(1,000)"),  # not a plain number: a tuple, keep the comma
    ("x = 2.50", "2.5"), ("\\$18", "18"), ("\\left( 1, 2 \\right]", "(1,2]"), ("-3", "-3"),
    ("\\text{Monday}", "Monday"),
])
def test_normalize_answer(raw, expected):
  assert normalize_answer(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("5 \\text{ cm}^2", "5"), ("5 \\text{ and } 6", "5and6"), ("2 + 3 i", "2+3i"), ("5 pi", "5pi"),
    ("12 square units", "12"), ("\\mbox{four}", "four"),
])
def test_normalize_keeps_math_between_numbers(raw, expected):
  assert normalize_answer(raw) == expected


def test_braceless_box_without_space():
  assert last_boxed_content("so \\boxed5.") == "5"
