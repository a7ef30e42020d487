"""Random and adversarial responses for the on-device verifier property tests (seeded, reproducible).

Each generator returns (responses, ground_truths): strings built from fragments that hit every rule of the
host verifiers (boxes, braces, escapes, signs, commas, fractions, Unicode digits and spaces, tags,
operators, parentheses, division by zero, reused numbers...), mixed with correct answers so that both
rewards occur often.
"""
from __future__ import annotations

import json
import random

MAX_CHARS = 400  # longer than the host's 300-character expression limit, short enough for fast tests
_DIGIT_SETS = ("0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९")
_NOISE = [" ", "  ", "\t", "\n", "\xa0", "\u3000", "\u2009", "$", ".", ",", "-", "--", "{", "}", "\\{", "\\}",
          "\\", "é", "😀", "x", "=", "So ", "The answer is ", "\\frac{1}{2}", "\\boxed{", "\\boxed", "\\fbox",
          "\\boxedx{7}", "\\boxedé{7}", "\\boxed{}", "\\boxed }", "\\boxed\\frac12", "\\boxed\n5", "\\boxed $5",
          "1.5.3", "12.50", ".0", "-.0", "-0", "000", "0.", "1,2,3", "$-4", "-$4", str(10 ** 55), "ab", "\r\n"]


def _unicode_digits(text: str, rng: random.Random) -> str:
  table = str.maketrans("0123456789", rng.choice(_DIGIT_SETS))
  return text.translate(table)


def _arith_fragment(truth: int, rng: random.Random) -> str:
  t = truth
  options = [f"\\boxed{{{t}}}", f"\\boxed{{{t + rng.choice([-1, 1, 10])}}}", f"\\boxed {t}", f"\\boxed{t}",
             f"\\fbox{{{t}}}", f"\\boxed{{ {t} }}", f"\\boxed{{{t:,}}}", f"\\boxed{{${t}$}}", f"\\boxed{{0{t}}}",
             f"\\boxed{{{t}.0}}", f"\\boxed{{{t}.00}}", f"\\boxed{{{t}.5}}", f"\\boxed{{\xa0{t}\u3000}}",
             f"\\boxed{{{_unicode_digits(str(t), rng)}}}", f"\\boxed{{{{{t}}}}}", f"\\boxed{{{t}\\}}}}",
             f"\\boxed{{{t}", f"\\boxed \t{{{t}}}.", f"\\boxed {t}.,", f"\\boxed{{-{t}}}", f"\\boxed{{- {t}}}",
             str(t), f"{t}.", f"{t}.0", f"{t}.000", f"-{abs(t)}", f"${t}", f"{t:,}", f"{t}.10",
             _unicode_digits(str(t), rng), f"0{t}", f"{t}{t}", f"\\boxed{{{t}}} and \\boxed{{{t + 1}}}"]
  return rng.choice(options) if rng.random() < 0.6 else rng.choice(_NOISE)


def arith_cases(count: int, seed: int) -> tuple[list[str], list[str]]:
  """Responses to integer problems and their ground truths (str(int), some 0, negative or huge)."""
  rng = random.Random(seed)
  responses, truths = [], []
  for _ in range(count):
    kind = rng.random()
    truth = (0 if kind < 0.05 else rng.randint(-10 ** 20, 10 ** 20) if kind < 0.1
             else rng.randint(-500, 5000))
    parts = [_arith_fragment(truth, rng) for _ in range(rng.randint(0, 6))]
    responses.append("".join(parts) if rng.random() < 0.5 else " ".join(parts))
    truths.append(str(truth))
  return responses, truths


def _expression(numbers: list[int], rng: random.Random) -> str:
  """A random fully parenthesised expression over a random subset of `numbers`."""
  picked = rng.sample(numbers, rng.randint(1, len(numbers)))
  text = str(picked[0])
  for x in picked[1:]:
    op = rng.choice("+-*/")
    text = f"({text} {op} {x})" if rng.random() < 0.5 else f"{text} {op} {x}"
  return text


def _value(expression: str):
  from simko_jax.rewards.countdown_check import CountdownParseError, evaluate_countdown_expression
  try:
    return evaluate_countdown_expression(expression, [int(t) for t in expression.replace("(", " ").replace(
        ")", " ").replace("+", " ").replace("-", " ").replace("*", " ").replace("/", " ").split()])
  except (CountdownParseError, ZeroDivisionError, ValueError):
    return None


_MUTATIONS = [lambda e, r: e.replace("*", r.choice(["\\times", "×", "x", "X", "\\cdot", " * "])),
              lambda e, r: e.replace("/", r.choice(["\\div", "÷", "/", ":"])),
              lambda e, r: e.replace("(", r.choice(["\\left(", "\\(", "( ", "\\le\\leftft("]), 1),
              lambda e, r: e.replace(")", r.choice(["\\right)", "\\)", " )", "\\ri\\leftght)"]), 1),
              lambda e, r: e + r.choice([" = 24", "=", " $", ")", "(", " 7", "+", "/0", "/(3-3)", " ."]),
              lambda e, r: r.choice(["(", "((", "-", "$", " ", "\\(", "0", "07*"]) + e,
              lambda e, r: "(" * 33 + e + ")" * 33, lambda e, r: "(" * 32 + e + ")" * 32,
              lambda e, r: e.replace(" ", ""), lambda e, r: _unicode_digits(e, r),
              lambda e, r: e + " + 0" * r.randint(60, 80), lambda e, r: e.replace("1", "01"),
              lambda e, r: e.replace("+", "-", 1), lambda e, r: e + "*" + e,
              lambda e, r: e.replace(" ", "\xa0"), lambda e, r: e + "\n", lambda e, r: "()" + e]


def _wrap(expression: str, rng: random.Random) -> str:
  return rng.choice([f"<answer>{expression}</answer>", f"\\boxed{{{expression}}}", f"\\boxed {expression}",
                     f"<answer>{expression}", f"<answer>1</answer><answer>{expression}</answer>",
                     f"<answer>\\boxed{{{expression}}}</answer>", f"\\boxed{{{expression}}}<answer></answer>",
                     f"<answer>x<answer>{expression}</answer>", f"</answer>{expression}</answer>",
                     f"Thus <answer> {expression} </answer>.", f"$\\boxed{{{expression}}}$", expression,
                     f"<answer>\n{expression}\n</answer>", f"<answer>{expression}</answer> \\boxed{{1}}"])


def countdown_cases(count: int, seed: int) -> tuple[list[str], list[str]]:
  """Countdown responses and ground-truth JSON: random problems, expressions, mutations and wrappers."""
  rng = random.Random(seed)
  responses, truths = [], []
  for _ in range(count):
    numbers = [rng.randint(0 if rng.random() < 0.1 else 1, 50) for _ in range(rng.randint(2, 6))]
    expression = _expression(numbers, rng)
    value = _value(expression)
    target = int(value) if value is not None and value.denominator == 1 and rng.random() < 0.8 else (
        rng.randint(-20, 500))
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
      expression = rng.choice(_MUTATIONS)(expression, rng)
    text = _wrap(expression, rng)
    if rng.random() < 0.3:
      text = rng.choice(_NOISE) + text + rng.choice(_NOISE)
    responses.append(text[:MAX_CHARS])  # a cut response is one more adversarial case; X stays small
    truths.append(json.dumps({"numbers": numbers, "target": target}))
  return responses, truths


def token_rows(smollm2, char, responses: list[str], seed: int, exact_last: int = 0):
  """Every response tokenized twice, rows [0, N) by SmolLM2 and rows [N, 2N) by the character tokenizer,
  in ONE table (char ids shifted past SmolLM2's) so that one jitted call checks both. 5% of the SmolLM2 rows
  get random single-byte tokens (invalid UTF-8 -> U+FFFD), except the last `exact_last` (whose host text is
  then the response itself); every row gets random masked-out tokens between its own.
  Returns (table, tokens_BxR, mask_BxR, host_texts): host_texts are each row's `decode(...)` on the host."""
  import numpy as np

  from simko_jax.rewards.token_text import table_from_pieces, token_pieces
  rng = random.Random(seed)
  smol_pieces = token_pieces(smollm2)
  shift = len(smol_pieces)
  single_bytes = [i for i, piece in enumerate(smol_pieces) if len(piece) == 1 and piece[0] >= 0x80]
  rows, texts = [], []
  for index, response in enumerate(responses):
    ids = smollm2.encode(response)
    if rng.random() < 0.05 and index < len(responses) - exact_last:
      for _ in range(rng.randint(1, 3)):
        ids.insert(rng.randint(0, len(ids)), rng.choice(single_bytes))
    texts.append(smollm2.decode(ids, skip_special_tokens=True))
    rows.append(ids)
  for response in responses:
    ids = char.encode(response)
    texts.append(char.decode(ids, skip_special_tokens=True))
    rows.append([i + shift for i in ids])
  width = -(-max(len(r) for r in rows) // 32) * 32 + 4
  tokens = np.zeros((len(rows), width), np.int32)
  mask = np.zeros((len(rows), width), np.int32)
  for i, ids in enumerate(rows):
    slots = sorted(rng.sample(range(width), len(ids)))  # holes between response tokens are masked out
    tokens[i] = [rng.randrange(shift) for _ in range(width)]
    tokens[i, slots], mask[i, slots] = ids, 1
  return table_from_pieces(smol_pieces + token_pieces(char)), tokens, mask, texts
