"""The response text on device: token ids -> the code points of `tokenizer.decode(ids, skip_special_tokens=True)`.

The host turns a response into text with `tokenizer.decode(row[mask > 0], skip_special_tokens=True)`
(`train/rollout.py`). For the library's tokenizers that text is a function of a per-token table:
  * byte-level BPE (SmolLM2, Qwen; `tokenizers` decoder "ByteLevel"): the text is the UTF-8 decoding, with
    U+FFFD for each maximal invalid subsequence (Rust's `from_utf8_lossy`, which is also Python's
    `bytes.decode("utf-8", "replace")`), of the concatenated bytes of the tokens; special tokens are dropped;
  * the character tokenizer (`models/char_tokenizer.py`, `chat_template == "char"`): one character per id,
    ids 0-2 (pad/bos/eos) dropped.
`token_table(tokenizer)` builds that table once on the host (flat bytes + per-id start/length; ids the
tokenizer does not know decode to nothing, as in `tokenizers`). `response_chars` does the rest on device:
gather each response byte by output position, decode UTF-8 (vectorised: every rule of the decoder looks at
most 3 bytes back or ahead) and compact the code points to the left of a [B, X] array.

Exactness: the device text equals the host text code point for code point, U+FFFD included, except that
only the LAST `max_chars` code points are kept (`truncated_B` says where it happened), which is exactly what
`VerifierPool(max_response_chars=max_chars)` does to the host text before checking. A text has at most
R * max_token_bytes code points, so with max_chars = min(R * max_token_bytes, pool.max_response_chars) (the
default of `on_device.DeviceReward`) the device verifiers see exactly what the pool's verifiers see.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

REPLACEMENT = 0xFFFD
PAD = -1  # code point value past a row's length


class UnsupportedTokenizer(ValueError):
  """The tokenizer's decode is not a per-token byte table (e.g. SentencePiece): use host rewards."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TokenTable:
  """Decoded bytes of every token id. Arrays (device or numpy):
    bytes_N   uint8 [N]   all tokens' bytes, concatenated
    start_V   int32 [V]   where id v's bytes start in bytes_N
    length_V  int32 [V]   how many bytes id v decodes to (0: special / unknown)
  `max_token_bytes` (static) = max(length_V)."""
  bytes_N: jax.Array
  start_V: jax.Array
  length_V: jax.Array
  max_token_bytes: int = dataclasses.field(metadata=dict(static=True))


def _gpt2_byte_chars() -> dict[str, int]:
  """GPT-2's printable stand-in character of each byte (inverse map: char -> byte)."""
  kept = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
      list(range(ord("®"), ord("ÿ") + 1))
  chars, extra = {}, 0
  for b in range(256):
    if b in kept:
      chars[chr(b)] = b
    else:
      chars[chr(256 + extra)] = b
      extra += 1
  return chars


def _byte_level_pieces(backend) -> list[bytes]:
  decoder = json.loads(backend.to_str()).get("decoder") or {}
  if decoder.get("type") != "ByteLevel":
    raise UnsupportedTokenizer(f"on-device rewards need a byte-level BPE tokenizer (decoder 'ByteLevel'), this "
                               f"one decodes with {decoder.get('type')!r}; use the host reward callback")
  special = {i for i, tok in backend.get_added_tokens_decoder().items() if tok.special}
  byte_of = _gpt2_byte_chars()
  pieces = []
  for i in range(backend.get_vocab_size(with_added_tokens=True)):
    token = backend.id_to_token(i)
    if token is None or i in special:
      pieces.append(b"")
    elif all(ch in byte_of for ch in token):
      pieces.append(bytes(byte_of[ch] for ch in token))
    else:  # `tokenizers`' ByteLevel decoder keeps such a token's own UTF-8 bytes
      pieces.append(token.encode("utf-8"))
  return pieces


def token_pieces(tokenizer) -> list[bytes]:
  """The bytes each token id decodes to under `decode(..., skip_special_tokens=True)` (host, once)."""
  if getattr(tokenizer, "chat_template", None) == "char":
    return [tokenizer.decode([i], skip_special_tokens=True).encode("utf-8") for i in range(tokenizer.vocab_size)]
  backend = getattr(tokenizer, "_backend", None)
  if getattr(tokenizer, "_kind", None) != "tokenizers" or backend is None:
    raise UnsupportedTokenizer(f"on-device rewards support byte-level BPE and the character tokenizer, not "
                               f"{type(tokenizer).__name__} ({getattr(tokenizer, '_kind', '?')}); use the host "
                               "reward callback")
  return _byte_level_pieces(backend)


def token_table(tokenizer, vocab_size: int | None = None) -> TokenTable:
  """`TokenTable` of `tokenizer` (numpy arrays), padded with empty entries to `vocab_size` (the model's
  embedding rows may outnumber the tokenizer's ids)."""
  pieces = token_pieces(tokenizer)
  return table_from_pieces(pieces + [b""] * max(0, (vocab_size or 0) - len(pieces)))


def table_from_pieces(pieces: list[bytes]) -> TokenTable:
  """`TokenTable` (numpy) whose id v decodes to pieces[v]."""
  length_V = np.array([len(p) for p in pieces], np.int32)
  start_V = np.concatenate([[0], np.cumsum(length_V)[:-1]]).astype(np.int32)
  bytes_N = np.frombuffer(b"".join(pieces) or b"\0", np.uint8).copy()
  return TokenTable(bytes_N, start_V, length_V, int(length_V.max(initial=1)))


def _response_bytes(table: TokenTable, tokens_BxR, mask_BxR, num_bytes: int):
  """The last `num_bytes` bytes of each row's decoded bytes: (bytes_BxY int32, PAD past the end; total_B)."""
  vocab = table.length_V.shape[0]
  ok_BxR = (mask_BxR > 0) & (tokens_BxR >= 0) & (tokens_BxR < vocab)
  ids_BxR = jnp.where(ok_BxR, tokens_BxR, 0)
  n_BxR = jnp.where(ok_BxR, jnp.asarray(table.length_V)[ids_BxR], 0)
  end_BxR = jnp.cumsum(n_BxR, axis=1)
  start_BxR = end_BxR - n_BxR
  total_B = end_BxR[:, -1]
  offset_B = jnp.maximum(total_B - num_bytes, 0)
  rows_B1 = jnp.arange(tokens_BxR.shape[0])[:, None]
  r_BxR = jnp.broadcast_to(jnp.arange(tokens_BxR.shape[1]), tokens_BxR.shape)
  # Token of each byte: the last token starting at or before it (marks + cummax); a token that starts before
  # the window and covers its first byte is the number of tokens ending at or before the window start.
  at_BxR = jnp.where(n_BxR > 0, start_BxR - offset_B[:, None], num_bytes)
  at_BxR = jnp.where(at_BxR < 0, num_bytes, at_BxR)
  marks_BxY = jnp.full((tokens_BxR.shape[0], num_bytes), -1, jnp.int32).at[rows_B1, at_BxR].max(r_BxR, mode="drop")
  first_B = jnp.sum(end_BxR <= offset_B[:, None], axis=1)
  r_BxY = jnp.maximum(jax.lax.cummax(marks_BxY, axis=1), first_B[:, None])
  r_BxY = jnp.minimum(r_BxY, tokens_BxR.shape[1] - 1)
  g_BxY = offset_B[:, None] + jnp.arange(num_bytes)
  within_BxY = g_BxY - jnp.take_along_axis(start_BxR, r_BxY, axis=1)
  ids_BxY = jnp.take_along_axis(ids_BxR, r_BxY, axis=1)
  index_BxY = jnp.asarray(table.start_V)[ids_BxY] + within_BxY
  valid_BxY = g_BxY < total_B[:, None]
  bytes_BxY = jnp.asarray(table.bytes_N)[jnp.where(valid_BxY, index_BxY, 0)].astype(jnp.int32)
  return jnp.where(valid_BxY, bytes_BxY, PAD), total_B


def _in(x, lo, hi):
  return (x >= lo) & (x <= hi)


def _decode_utf8(b0):
  """Lossy UTF-8 decoding of bytes_BxY (PAD past the end): (starts_BxY bool, code_points_BxY int32)."""
  def ahead(k):
    return jnp.pad(b0[:, k:], ((0, 0), (0, k)), constant_values=PAD)
  b1, b2, b3 = ahead(1), ahead(2), ahead(3)
  cont = lambda b: _in(b, 0x80, 0xBF)
  lo1 = jnp.where(b0 == 0xE0, 0xA0, jnp.where(b0 == 0xF0, 0x90, 0x80))
  hi1 = jnp.where(b0 == 0xED, 0x9F, jnp.where(b0 == 0xF4, 0x8F, 0xBF))
  ok1, ok2, ok3 = _in(b1, lo1, hi1), cont(b2), cont(b3)
  two, three, four = _in(b0, 0xC2, 0xDF), _in(b0, 0xE0, 0xEF), _in(b0, 0xF0, 0xF4)
  # Span: bytes one code point (valid) or one U+FFFD (maximal invalid subpart) takes from a lead byte.
  span = jnp.where(two, 1 + ok1, 1)
  span = jnp.where(three, 1 + ok1 + (ok1 & ok2), span)
  span = jnp.where(four, 1 + ok1 + (ok1 & ok2) + (ok1 & ok2 & ok3), span)
  valid = (b0 >= 0) & ((b0 < 0x80) | (two & (span == 2)) | (three & (span == 3)) | (four & (span == 4)))
  m = lambda b: b & 0x3F
  cp = jnp.where(b0 < 0x80, b0, REPLACEMENT)
  cp = jnp.where(two & valid, ((b0 & 0x1F) << 6) | m(b1), cp)
  cp = jnp.where(three & valid, ((b0 & 0x0F) << 12) | (m(b1) << 6) | m(b2), cp)
  cp = jnp.where(four & valid, ((b0 & 0x07) << 18) | (m(b1) << 12) | (m(b2) << 6) | m(b3), cp)
  lead = (b0 >= 0) & ~cont(b0)
  covered = jnp.zeros_like(lead)
  for d in (1, 2, 3):  # a continuation byte is part of the span of a lead byte at most 3 bytes back
    lead_d = jnp.pad(lead, ((0, 0), (d, 0)))[:, :-d]
    span_d = jnp.pad(span, ((0, 0), (d, 0)))[:, :-d]
    covered |= lead_d & (span_d > d)
  starts = (b0 >= 0) & (lead | ~covered)
  return starts, cp


def response_chars(table: TokenTable, tokens_BxR, mask_BxR, max_chars: int):
  """Device view of each response's decoded text (see module docstring).

  Args: tokens_BxR int [B, R] token ids; mask_BxR [B, R] (> 0: part of the response, as `row[mask > 0]`);
    max_chars: X, the code points kept per row (the last X).
  Returns: chars_BxX int32 code points left-aligned, PAD (-1) past length_B; length_B int32 (<= X);
    truncated_B bool (the text had more than X code points).
  """
  num_bytes = 4 * max_chars + 3  # the last X code points take <= 4X bytes; 3 more decide their starts
  bytes_BxY, total_B = _response_bytes(table, tokens_BxR, mask_BxR, num_bytes)
  starts_BxY, cp_BxY = _decode_utf8(bytes_BxY)
  count_B = jnp.sum(starts_BxY, axis=1)
  drop_B = jnp.maximum(count_B - max_chars, 0)
  dest_BxY = jnp.cumsum(starts_BxY, axis=1) - 1 - drop_B[:, None]
  dest_BxY = jnp.where(starts_BxY & (dest_BxY >= 0), dest_BxY, max_chars)
  rows_B1 = jnp.arange(bytes_BxY.shape[0])[:, None]
  chars_BxX = jnp.full((bytes_BxY.shape[0], max_chars), PAD, jnp.int32).at[rows_B1, dest_BxY].set(
      cp_BxY, mode="drop")
  truncated_B = (count_B > max_chars) | (total_B > num_bytes)
  return chars_BxX, jnp.minimum(count_B, max_chars).astype(jnp.int32), truncated_B
