"""The MATH reward's extraction chain (boxed -> "the answer is" -> last number) on realistic responses to
problems of the paper's training sets (../shared/data/train, read in place), against a transcription of
the SimKO authors' `extract_answer_math` (verl/utils/reward_score/utils.py)."""

import re

import pyarrow.parquet as pq
import pytest

from simko_jax.eval.generation import canonical_answer
from simko_jax.rewards.extract import answer_is_content, extract_math_answer_chain, normalize_answer
from simko_jax.rewards.math_verify_check import boxed_math_reward, chained_math_reward
from simko_jax.rewards.pool import VerifierPool
from simko_jax.rewards.registry import compute_reward, get_reward_fn

TRAIN = "../shared/data/train/"


def authors_extract_answer_math(pred_str):
  """CLR-Lab/SimKO verl/utils/reward_score/utils.py::extract_answer_math up to its final strip_string
  (the string normalisation is compared through `normalize_answer` instead)."""
  if "boxed" in pred_str:
    ans = pred_str.split("boxed")[-1]
    if len(ans) == 0:
      return ""
    elif ans[0] == "{":
      stack, a = 1, ""
      for c in ans[1:]:
        if c == "{":
          stack += 1
          a += c
        elif c == "}":
          stack -= 1
          if stack == 0:
            break
          a += c
        else:
          a += c
    else:
      a = ans.split("$")[0].strip()
    pred = a
  elif "he answer is" in pred_str:
    pred = pred_str.split("he answer is")[-1].strip()
  else:
    pred = re.findall(r"-?\d*\.?\d+", pred_str.replace(",", ""))
    pred = pred[-1] if len(pred) >= 1 else ""
  pred = pred.split("\n")[0]
  if pred != "" and pred[0] == ":":
    pred = pred[1:]
  if pred != "" and pred[-1] == ".":
    pred = pred[:-1]
  if pred != "" and pred[-1] == "/":
    pred = pred[:-1]
  return pred


def _problems():
  """{problem text prefix: gold answer} of the training rows the responses below answer."""
  math = pq.read_table(TRAIN + "math_train.parquet").to_pylist()
  gsm = pq.read_table(TRAIN + "gsm8k_level1_train.parquet").to_pylist()
  gold = lambda row: (row["reward_model"]["ground_truth"]["target"]
                      if isinstance(row["reward_model"]["ground_truth"], dict)
                      else row["reward_model"]["ground_truth"])
  return {"ceil": (math[3], gold(math[3])), "circle": (math[10], gold(math[10])),
          "square": (math[25], gold(math[25])), "ball": (math[40], gold(math[40])),
          "sequence": (math[77], gold(math[77])), "cross": (math[-1], gold(math[-1])),
          "marbles": (gsm[1], gold(gsm[1]))}


PROBLEMS = _problems()

# (problem, response, reward with "boxed" extraction, reward with the chain)
CASES = [
    ("ceil", "First compute the inside: $6 - \\frac12 = \\frac{11}{2}$. Then $3 \\cdot \\frac{11}{2} = "
             "\\frac{33}{2} = 16.5$. The ceiling of $16.5$ is the least integer greater than or equal to it, "
             "so the answer is $\\boxed{17}$.", 1.0, 1.0),
    ("square", "The side of the square is the distance between the two vertices: $\\sqrt{(2-(-1))^2 + "
               "(-3-4)^2} = \\sqrt{9 + 49} = \\sqrt{58}$. The area is the side squared.\nTherefore, the answer "
               "is 58.\n\n(Check: $3^2 + 7^2$ is indeed $58$, and a square's area is $s^2$.)", 0.0, 1.0),
    ("marbles", "Let $r$ be the number of red marbles. Then Brett has $r + 24$ blue marbles, and also "
                "$5r$ blue marbles. So $5r = r + 24$, which gives $4r = 24$ and $r = 6$. Brett has 6 red "
                "marbles.", 0.0, 1.0),
    ("ball", "The height $-16t^2+64t+31$ is largest at the vertex $t = -\\frac{64}{2(-16)} = 2$. There "
             "$-16(4) + 128 + 31 = \\boxed{94}$ feet.\nWait, $-64 + 128 + 31 = 95$, so the answer is 95.",
     0.0, 0.0),  # a wrong box wins over a later correct "the answer is" (boxed is tried first)
    ("cross", "The cross product is zero exactly when the vectors are parallel, so $\\frac{5}{2} = "
              "\\frac{4}{a} = \\frac{b}{-7}$. Hence $a = \\frac{8}{5}$ and $b = -\\frac{35}{2}$.\nThe answer "
              "is $\\left( \\frac{8}{5}, -\\frac{35}{2} \\right)$.", 0.0, 1.0),
    ("sequence", "The common difference is $10 - 1 = 9$. The 21st term is $1 + 20 \\cdot 9 = 181$.\n"
                 "The answer is: 181.", 0.0, 1.0),
    ("circle", "The center is the midpoint $\\left(\\frac{9 + (-3)}{2}, \\frac{-5 + (-1)}{2}\\right) = (3, -3)$"
               ", so the sum of its coordinates is $\\boxed{0", 0.0, 1.0),  # cut mid-box: falls to last number
    ("ball", "To find the maximum height I need to complete the square", 0.0, 0.0),
]


@pytest.mark.parametrize("name, response, boxed, chained", CASES)
def test_rewards_on_realistic_responses(name, response, boxed, chained):
  row, gold = PROBLEMS[name]
  assert boxed_math_reward(response, gold) == boxed
  assert chained_math_reward(response, gold) == chained
  source = row["data_source"]  # TianHongZXY/MATH or simplelr_abel, as in the files
  assert compute_reward(response, gold, source) == boxed
  assert compute_reward(response, gold, source, math_extraction="boxed_answer_is_number") == chained


@pytest.mark.parametrize("name, response", [(n, r) for n, r, _, _ in CASES if "\\boxed{0" not in r])
def test_chain_extracts_what_the_authors_extract(name, response):
  ours = extract_math_answer_chain(response)
  theirs = authors_extract_answer_math(response)
  assert normalize_answer(ours) == normalize_answer(theirs)


def test_truncated_box_is_skipped_where_the_authors_take_its_tail():
  response = CASES[6][1]
  assert extract_math_answer_chain(response) == "0"
  assert authors_extract_answer_math(response) == "0"  # here both find "0", by different rules
  cut = "so it is $\\boxed{\\frac{a}{"
  assert extract_math_answer_chain(cut) is None  # no phrase, no number: nothing to fall back to
  assert authors_extract_answer_math(cut) == "\\frac{a}{"
  assert extract_math_answer_chain(cut + "2") == "2" and authors_extract_answer_math(cut + "2") == "\\frac{a}{2"


def test_answer_is_content_trimming():
  assert answer_is_content("The answer is: $\\frac{1}{2}$.\nDone") == "$\\frac{1}{2}$"
  assert answer_is_content("the answer is 12/") == "12"
  assert answer_is_content("the answer is\n7") == "7"
  assert answer_is_content("no phrase here 5") is None
  assert answer_is_content("The answer is") is None


def test_registry_switches_only_math_sources():
  assert get_reward_fn("TianHongZXY/MATH", math_extraction="boxed_answer_is_number") is chained_math_reward
  assert get_reward_fn("simplelr_abel") is boxed_math_reward
  gsm8k = get_reward_fn("openai/gsm8k")
  assert get_reward_fn("openai/gsm8k", math_extraction="boxed_answer_is_number") is gsm8k
  with pytest.raises(ValueError, match="boxed_answer_is_number"):
    get_reward_fn("math", math_extraction="last_number")


def test_majority_vote_answers_follow_the_extraction():
  response = CASES[2][1]
  assert canonical_answer(response, "math") is None
  assert canonical_answer(response, "math", "boxed_answer_is_number") == "6"


def test_pool_scores_with_the_configured_extraction():
  triples = [(r, PROBLEMS[n][1], PROBLEMS[n][0]["data_source"]) for n, r, _, _ in CASES]
  with VerifierPool(num_workers=1, timeout_s=20.0, math_extraction="boxed_answer_is_number") as pool:
    assert pool.score(triples) == [c for _, _, _, c in CASES]
  with pytest.raises(ValueError, match="math_extraction"):
    VerifierPool(num_workers=1, math_extraction="nope")
