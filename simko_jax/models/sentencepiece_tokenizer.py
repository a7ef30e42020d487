"""`SentencePieceBackend`: a SentencePiece `.model` plus the HF added tokens around it (Gemma's tokenizer).

What transformers does with the same files (a dir with `tokenizer.model` and no `tokenizer.json`): it
converts the model to a `tokenizers` BPE and registers added tokens, which are matched in the raw text
*before* the model sees it and decode to their own text. This backend reproduces that with the
`sentencepiece` package itself:
  - added tokens = the model's control and unknown pieces (special: `<pad>`, `<eos>`, `<bos>`, `<unk>`),
    its user-defined pieces (not special unless the config says so: Gemma's `<start_of_turn>`), the
    `added_tokens_decoder` of `tokenizer_config.json` (its `special` flag wins), and the bos / eos / pad /
    unk / mask / additional special token strings of the config and `special_tokens_map.json`;
  - encode: split the text on added tokens (leftmost, longest first), SentencePiece-encode the text in
    between, so `"<bos><start_of_turn>user\\n..."` from a chat template gives one id per marker;
  - decode: added tokens give their text (dropped when special and `skip_special_tokens`), runs of
    ordinary ids are SentencePiece-decoded (byte-fallback pieces re-join into UTF-8; a byte run that is
    not UTF-8 gives one U+FFFD per byte, as transformers' ByteFallback decoder).
Added tokens' lstrip / rstrip / single_word flags are not applied (Gemma sets none of them).
Agreement with transformers, token for token, is tested on a Gemma-style model (BPE, byte fallback, no
dummy prefix) in tests/models/test_sentencepiece_tokenizer.py.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Sequence

from simko_jax.models.errors import MissingModelFileError, ModelLoadError, one_line
from simko_jax.models.tokenizer import token_str

SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token")
LIST_KEYS = ("additional_special_tokens", "extra_special_tokens")


def load_processor(path: str):
  """`sentencepiece.SentencePieceProcessor` of the file at `path`; ModelLoadError (one line) if it is not
  a SentencePiece model."""
  import sentencepiece
  if not os.path.isfile(path):
    raise MissingModelFileError(f"SentencePiece model {path!r} does not exist: copy the model's "
                                "tokenizer.model there")
  with open(path, "rb") as f:
    proto = f.read()
  sp = sentencepiece.SentencePieceProcessor()
  try:
    sp.LoadFromSerializedProto(proto)
  except (RuntimeError, OSError, TypeError) as err:
    raise ModelLoadError(f"{path} is not a readable SentencePiece model ({one_line(err, 100)}): the file is "
                         "damaged or is another format; re-download the model's tokenizer.model") from err
  if sp.get_piece_size() == 0:
    raise ModelLoadError(f"{path} is a SentencePiece model with no pieces: re-download the model's "
                         "tokenizer.model")
  return sp


class SentencePieceBackend:
  """A `SentencePieceProcessor` plus added tokens (see module doc).

  `added`: {id: (text, special)}; ids at or past the model's piece count extend the vocabulary (as
  transformers appends them). A text listed under two ids encodes to the later one.
  """

  def __init__(self, sp, added: dict[int, tuple[str, bool]], source: str = "tokenizer.model"):
    self.sp = sp
    self.source = source
    self.num_pieces = sp.get_piece_size()
    self.added = dict(added)
    self._added_ids = {text: i for i, (text, _) in self.added.items()}
    texts = sorted(self._added_ids, key=len, reverse=True)  # longest first: leftmost-longest match
    self._split = re.compile("|".join(map(re.escape, texts))) if texts else None

  @property
  def vocab_size(self) -> int:
    return max([self.num_pieces] + [i + 1 for i in self.added])

  def serialized_model(self) -> bytes:
    return self.sp.serialized_model_proto()

  def token_to_id(self, text: str) -> int | None:
    if text in self._added_ids:
      return self._added_ids[text]
    i = self.sp.piece_to_id(text)
    return i if self.sp.id_to_piece(i) == text else None  # piece_to_id answers unk for unknown text

  def id_to_token(self, i: int) -> str | None:
    if i in self.added:
      return self.added[i][0]
    return self.sp.id_to_piece(i) if 0 <= i < self.num_pieces else None

  def encode(self, text: str) -> list[int]:
    ids: list[int] = []
    pos = 0
    for m in (self._split.finditer(text) if self._split else ()):
      if m.start() > pos:
        ids += self.sp.encode(text[pos:m.start()])
      ids.append(self._added_ids[m.group()])
      pos = m.end()
    if pos < len(text):
      ids += self.sp.encode(text[pos:])
    return ids

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    """Text of `ids`; ids outside the vocabulary are dropped (as transformers does): a model whose
    vocab_size is padded past the tokenizer's can sample them."""
    parts: list[str] = []
    run: list[int] = []
    for i in ids:
      if i not in self.added:
        if 0 <= i < self.num_pieces:
          run.append(i)
        continue
      text, special = self.added[i]
      if special and skip_special_tokens:
        continue  # dropped before decoding: the pieces around it decode as one run, as in transformers
      if run:
        parts.append(self._decode_run(run))
        run = []
      parts.append(text)
    if run:
      parts.append(self._decode_run(run))
    return "".join(parts)

  def _decode_run(self, run: list[int]) -> str:
    """SentencePiece's decode of ordinary ids, except for a run of byte pieces that is not valid UTF-8:
    transformers' ByteFallback decoder turns every byte of such a run into U+FFFD, where SentencePiece
    replaces only the offending bytes. Sampled ids can form such runs; both decoders agree otherwise."""
    text = self.sp.decode(run)
    if "\ufffd" not in text:  # every byte run was valid UTF-8 (the common case)
      return text
    groups: list[tuple[bool, list[int]]] = []  # (byte pieces?, ids), maximal runs
    for i in run:
      is_byte = self.sp.is_byte(i)
      if groups and groups[-1][0] == is_byte:
        groups[-1][1].append(i)
      else:
        groups.append((is_byte, [i]))
    return "".join(_utf8_or_replacement(bytes(int(self.sp.id_to_piece(i)[1:-1], 16) for i in ids))
                   if is_byte else self.sp.decode(ids) for is_byte, ids in groups)


def _utf8_or_replacement(raw: bytes) -> str:
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    return "\ufffd" * len(raw)


def _model_tokens(sp) -> dict[int, tuple[str, bool]]:
  """Control and unknown pieces (special) of the model; user-defined pieces are matched by
  SentencePiece itself and need no entry unless the config lists them."""
  return {i: (sp.id_to_piece(i), True) for i in range(sp.get_piece_size())
          if sp.is_control(i) or sp.is_unknown(i)}


def _config_tokens(sp, conf: dict[str, Any], added: dict[int, tuple[str, bool]]) -> None:
  """Add (in place) `added_tokens_decoder` entries and the named special tokens of `conf`."""
  for key, tok in (conf.get("added_tokens_decoder") or {}).items():
    text = token_str(tok)
    if text is not None:
      added[int(key)] = (text, bool(tok.get("special", True)) if isinstance(tok, dict) else True)
  known = {text: i for i, (text, _) in added.items()}
  named = [token_str(conf.get(k)) for k in SPECIAL_KEYS]
  for key in LIST_KEYS:
    extra = conf.get(key) or []
    named += [token_str(t) for t in (extra.values() if isinstance(extra, dict) else extra)]
  for text in filter(None, named):
    if text in known:
      continue
    i = sp.piece_to_id(text)
    if sp.id_to_piece(i) == text:  # a piece of the model (else: not in the vocabulary, ignored)
      added[i] = (text, True)


def sentencepiece_backend(model_file: str, configs: Iterable[dict[str, Any]] = ()) -> SentencePieceBackend:
  """The backend for `model_file` with the added tokens of `configs` (tokenizer_config.json, then
  special_tokens_map.json dicts; later entries win for the same id)."""
  sp = load_processor(model_file)
  added = _model_tokens(sp)
  for conf in configs:
    _config_tokens(sp, conf, added)
  return SentencePieceBackend(sp, added, source=os.path.abspath(model_file))
