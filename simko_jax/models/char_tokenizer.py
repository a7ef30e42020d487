"""A character-level tokenizer for tiny models trained from scratch (tests, the mechanism study).

Ids: 0 = pad, 1 = bos, 2 = eos, then one id per character of `ALPHABET` (printable ASCII and newline).
Characters outside the alphabet map to "?". The chat template is plain text:
  "User: {content}\nAssistant: "
It has the same interface as `simko_jax.models.Tokenizer` (encode / decode / apply_chat_template /
eos_id / pad_id / bos_id / vocab_size), so the data pipeline, sampler and rewards use it unchanged.
"""

from __future__ import annotations

import string
from typing import Any, Sequence

ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
_OFFSET = 3


class CharTokenizer:
  """Character tokenizer; `vocab_size` = 3 + len(ALPHABET) = 99 (fits every tiny preset's 256)."""

  def __init__(self):
    self.pad_id, self.bos_id, self.eos_id = PAD_ID, BOS_ID, EOS_ID
    self.vocab_size = _OFFSET + len(ALPHABET)
    self.chat_template = "char"
    self._ids = {ch: i + _OFFSET for i, ch in enumerate(ALPHABET)}
    self._unknown = self._ids["?"]

  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
    ids = [self._ids.get(ch, self._unknown) for ch in text]
    return ([BOS_ID] if add_special_tokens else []) + ids

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    out = []
    for i in ids:
      i = int(i)
      if i >= _OFFSET and i - _OFFSET < len(ALPHABET):
        out.append(ALPHABET[i - _OFFSET])
      elif not skip_special_tokens and i == EOS_ID:
        out.append("</s>")
    return "".join(out)

  def apply_chat_template(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
                          **kwargs) -> str:
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return text + ("Assistant: " if add_generation_prompt else "")


assert all(ch in ALPHABET for ch in string.digits + "+-*/()=\\{}")
