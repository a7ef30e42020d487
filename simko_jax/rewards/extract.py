"""Answer extraction and normalisation for verifiable math rewards. Stdlib only, never evaluates text.

Prediction side:
  * `last_boxed_content(text)`: content of the LAST `\\boxed{...}` / `\\fbox{...}` with balanced braces
    (nested braces fine, escaped `\\{`/`\\}` are literal characters and do not count), or of the braceless
    form `\\boxed 5` (the next whitespace/`$`-delimited token). None when there is none.
  * `extract_gsm8k_answer(text)`: `#### X` (last one), else the last boxed content, else the last number
    in the text. Commas, `$` and trailing `.` are removed.
  * `answer_is_content(text)`: what follows the last "the answer is" (first line, `:`/`.`/`/` trimmed).
  * `extract_math_answer_chain(text)`: the SimKO authors' MATH extraction order (verl
    `reward_score/utils.py::extract_answer_math`): last boxed content, else `answer_is_content`, else the
    last number. Difference, on purpose: a truncated (unbalanced) box is skipped here, where the authors
    take its unterminated text; a response cut mid-box therefore falls through to the next rule.

Ground-truth side:
  * `gold_from_math_solution(solution)`: the last boxed content of a MATH / Minerva solution.
  * `gold_from_olympiad_final_answer(value)`: OlympiadBench `final_answer`, a list or a list written as a
    string (e.g. "['$\\\\frac{1}{2}$']"); items are `$`-stripped and joined with ", ".
  * `gold_from_gsm8k_answer(answer)`: the text after the last `####`, commas removed.

Normalisation (`normalize_answer`) is the documented, deliberately lossy canonical form used by the
string fast path: `\\text{..}`/`\\mathrm{..}`/`\\mbox{..}`/`\\textbf{..}` are unwrapped, a TRAILING unit after
a number is dropped (`5 \\text{ cm}^2` -> `5`, `12 square units` -> `12`; bare words need >= 2 letters and
`pi` is kept, so `2 + 3 i` stays; words between numbers are kept: `5 \\text{ and } 6` -> `5and6`),
`^\\circ`, `\\%`/`%`, `$`, spacing macros (`\\,` `\\!` `\\;` `\\ `), `\\left`/`\\right` and
`\\displaystyle` are removed, `\\dfrac`/`\\tfrac` -> `\\frac`, thousands
separators in plain numbers are removed (`1,000` -> `1000`), whitespace and a trailing `.` are dropped,
a leading `x=`-style single-variable assignment is dropped, and `(B)` / `\\text{(B)}` -> `B`.
Consequence (deliberate): a percent sign is ignored, so `50\\%` == `50`; `50\\%` vs `0.5` is decided by
math-verify, not here.
"""

from __future__ import annotations

import ast
import json
import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_NUMBER_RE = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+")


def _matching_brace_end(text: str, open_index: int) -> int | None:
  """Index just past the `}` closing the `{` at `open_index`, or None if unbalanced (e.g. truncated)."""
  depth = 0
  i = open_index
  n = len(text)
  while i < n:
    ch = text[i]
    if ch == "\\" and i + 1 < n and text[i + 1] in "{}":
      i += 2  # `\{` / `\}` are literal braces in LaTeX, not grouping.
      continue
    if ch == "{":
      depth += 1
    elif ch == "}":
      depth -= 1
      if depth == 0:
        return i + 1
    i += 1
  return None


def _box_starts(text: str) -> list[tuple[int, int]]:
  """(command_start, content_search_start) of every box command, in text order."""
  starts = []
  for command in _BOX_COMMANDS:
    pos = text.find(command)
    while pos != -1:
      after = pos + len(command)
      # `\boxedfoo` is another macro; only accept `{`, whitespace or end-of-name here.
      if after >= len(text) or not text[after].isalpha():
        starts.append((pos, after))
      pos = text.find(command, after)
  starts.sort()
  return starts


def last_boxed_content(text: str) -> str | None:
  """Content of the last well-formed `\\boxed{...}` / `\\fbox{...}` / `\\boxed X` in `text`, stripped."""
  if not isinstance(text, str):
    return None
  for _, after in reversed(_box_starts(text)):
    i = after
    while i < len(text) and text[i] in " \t":
      i += 1
    if i < len(text) and text[i] == "{":
      end = _matching_brace_end(text, i)
      if end is None:
        continue  # truncated / unbalanced box: fall back to an earlier complete one
      return text[i + 1:end - 1].strip()
    if i < len(text) and text[i] not in "\\}":  # braceless `\boxed 5` / `\boxed5`: one token
      match = re.match(r"[^\s$]+", text[i:])
      if match:
        return match.group(0).rstrip(".,")
  return None


def _clean_number(token: str) -> str:
  token = token.replace(",", "").replace("$", "").rstrip(".")
  if "." in token:
    token = token.rstrip("0").rstrip(".") if re.fullmatch(r"-?\d*\.\d+", token) else token
  return token or "0"


def last_number(text: str) -> str | None:
  """The last number-looking token in `text` (commas/`$` removed), e.g. 'costs $1,200.50.' -> '1200.5'."""
  matches = _NUMBER_RE.findall(text or "")
  return _clean_number(matches[-1]) if matches else None


def extract_gsm8k_answer(text: str) -> str | None:
  """`#### X` (last), else last boxed content, else the last number; None when nothing is found."""
  if not isinstance(text, str):
    return None
  if "####" in text:
    tail = text.rsplit("####", 1)[1].strip()
    number = last_number(tail.split("\n", 1)[0])
    if number is not None:
      return number
  boxed = last_boxed_content(text)
  if boxed is not None:
    number = last_number(boxed)
    return number if number is not None else boxed
  return last_number(text)


_ANSWER_IS_RE = re.compile(r"[Tt]he answer is")


def answer_is_content(text: str) -> str | None:
  """Text after the last "The/the answer is" up to the end of that line, with a leading `:` and a trailing
  `.` or `/` removed (the authors' trimming); None when the phrase is absent or nothing follows it."""
  if not isinstance(text, str):
    return None
  matches = list(_ANSWER_IS_RE.finditer(text))
  if not matches:
    return None
  tail = text[matches[-1].end():].strip().split("\n", 1)[0].strip()
  tail = tail[1:].strip() if tail.startswith(":") else tail
  tail = tail[:-1].strip() if tail.endswith((".", "/")) else tail
  return tail or None


def extract_math_answer_chain(text: str) -> str | None:
  """Last boxed content, else what follows "the answer is", else the last number; None if none."""
  if not isinstance(text, str):
    return None
  for rule in (last_boxed_content, answer_is_content, last_number):
    answer = rule(text)
    if answer is not None:
      return answer
  return None


def gold_from_math_solution(solution: str) -> str | None:
  """Ground truth of a MATH / Minerva solution: its last boxed content."""
  return last_boxed_content(solution)


def gold_from_gsm8k_answer(answer: str) -> str | None:
  """Ground truth of a GSM8K `answer` field: the text after the last `####`, commas and `$` removed."""
  if not isinstance(answer, str) or "####" not in answer:
    return None
  value = answer.rsplit("####", 1)[1].strip().replace(",", "").replace("$", "")
  return value or None


def gold_from_olympiad_final_answer(value) -> str | None:
  """OlympiadBench `final_answer` (list, or list written as a string) -> '$'-stripped items joined by ', '."""
  items = value
  if isinstance(value, str):
    stripped = value.strip()
    if stripped.startswith("["):
      try:
        items = json.loads(stripped)
      except ValueError:
        try:
          items = ast.literal_eval(stripped)  # literal_eval only builds literals; dataset text only.
        except (ValueError, SyntaxError):
          items = [stripped]
    else:
      items = [stripped]
  if not isinstance(items, (list, tuple)) or not items:
    return None
  parts = [str(item).strip().strip("$").strip() for item in items]
  parts = [p for p in parts if p]
  return ", ".join(parts) if parts else None


# ----------------------------------------------------------------------------- normalisation

_UNIT_WORD_RE = re.compile(
    r"^(?:[a-zA-Z]+(?:\^?\{?-?\d\}?)?(?:\s*/\s*[a-zA-Z]+)?|[a-zA-Z]+(?:\s+[a-zA-Z]+){0,2})$")
_TEXT_MACRO_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{")


def _unwrap_text_macros(ans: str) -> str:
  """`\\text{..}`-style macros -> their content, dropping pure unit words that follow a number."""
  out = []
  i = 0
  while True:
    match = _TEXT_MACRO_RE.search(ans, i)
    if match is None:
      out.append(ans[i:])
      break
    end = _matching_brace_end(ans, match.end() - 1)
    if end is None:
      out.append(ans[i:])
      break
    content = ans[match.end():end - 1].strip()
    before = "".join(out) + ans[i:match.start()]
    follows_number = re.search(r"\d\s*(\^\{?\\circ\}?)?\s*$", before) is not None
    # Only a trailing unit is dropped (`5 \text{ cm}`, `5 \text{ cm}^2`), never a word between numbers
    # (`5 \text{ and } 6` must not become `56`).
    tail = re.fullmatch(r"\s*(\^\{?\d\}?)?\s*\.?\s*", ans[end:])
    out.append(ans[i:match.start()])
    if follows_number and tail is not None and _UNIT_WORD_RE.match(content):
      break  # drop the unit and everything after it (only `^2` / `.` / spaces)
    out.append(content)
    i = end
  return "".join(out)


def strip_answer_decorations(ans: str) -> str:
  """Remove presentation-only LaTeX (units, degrees, percent, `$`, spacing) keeping the math content."""
  s = ans.strip()
  s = _unwrap_text_macros(s)
  for old, new in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", ""),
                   ("\\displaystyle", ""), ("^\\circ", ""), ("^{\\circ}", ""), ("\\circ", ""),
                   ("\\%", ""), ("%", ""), ("\\$", ""), ("$", ""), ("\\!", ""), ("\\,", ""),
                   ("\\;", ""), ("\\:", ""), ("\\ ", " "), ("~", " ")):
    s = s.replace(old, new)
  # Trailing bare unit words after a number: `5 cm`, `12 dollars`, `3 square units`.
  # Words of >= 2 letters only, so `3 i` (imaginary unit) is kept; `pi` is math, not a unit.
  s = re.sub(r"(\d)\s+(?!pi\b)[a-zA-Z]{2,}(?:\s+[a-zA-Z]+){0,2}\s*$", r"\1", s)
  return s.strip()


def normalize_answer(ans: str | None) -> str:
  """Canonical string used by the equality fast path (see module docstring). '' for None."""
  if ans is None:
    return ""
  s = strip_answer_decorations(str(ans))
  # `x = 5` / `k=5` -> `5` (single-letter variable assignment only; `x+y=5` is kept).
  s = re.sub(r"^\s*[a-zA-Z]\s*=\s*", "", s)
  s = re.sub(r"\s+", "", s).rstrip(".")
  if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # thousands separators, plain numbers only
    s = s.replace(",", "")
  if re.fullmatch(r"-?\d+\.\d*", s):  # 2.50 -> 2.5, 3. -> 3
    s = s.rstrip("0").rstrip(".")
  match = re.fullmatch(r"\(?([A-Ea-e])\)?", s)  # multiple choice `(B)` / `B`
  if match:
    s = match.group(1).upper()
  return s
