"""token_text: the device view of a response is `tokenizer.decode(row[mask > 0], skip_special_tokens=True)`,
code point for code point (invalid UTF-8 included), cut to its last max_chars like VerifierPool."""
import jax
import numpy as np
import pytest

from simko_jax.models.tokenizer import _bytes_to_unicode
from simko_jax.rewards.token_text import (PAD, UnsupportedTokenizer, _gpt2_byte_chars, response_chars, token_pieces,
                                          token_table)


def _device_texts(table, tokens, mask, max_chars):
  chars, length, truncated = map(np.asarray, jax.jit(
      lambda tab, t, m: response_chars(tab, t, m, max_chars))(table, tokens, mask))
  assert (chars[np.arange(chars.shape[1]) >= length[:, None]] == PAD).all()
  return ["".join(map(chr, row[:n])) for row, n in zip(chars, length)], truncated


def _random_rows(rng, vocab, byte_ids, rows, width):
  tokens = rng.integers(0, vocab, size=(rows, width))
  tokens = np.where(rng.random((rows, width)) < 0.4, rng.choice(byte_ids, size=(rows, width)), tokens)
  tokens[:, :3] = [0, 1, 2]  # special tokens: dropped
  mask = (rng.random((rows, width)) < 0.85).astype(np.int32)
  return tokens, mask


@pytest.mark.parametrize("max_chars", [400, 17])
def test_smollm2_equals_decode_on_random_ids(smollm2_tokenizer, max_chars):
  pieces = token_pieces(smollm2_tokenizer)
  byte_ids = [i for i, p in enumerate(pieces) if len(p) == 1]  # raw bytes: invalid UTF-8 galore
  vocab = len(pieces) + 64  # ids past the tokenizer's (a padded embedding) decode to nothing
  tokens, mask = _random_rows(np.random.default_rng(0), vocab, byte_ids, rows=300, width=40)
  texts, truncated = _device_texts(token_table(smollm2_tokenizer, vocab), tokens, mask, max_chars)
  host = [smollm2_tokenizer.decode(row[m > 0], skip_special_tokens=True) for row, m in zip(tokens, mask)]
  assert texts == [h[-max_chars:] for h in host]  # VerifierPool's max_response_chars cut
  np.testing.assert_array_equal(truncated, [len(h) > max_chars for h in host])
  assert any("\ufffd" in h for h in host) and (truncated.any() == (max_chars < 100))


def test_every_smollm2_token_alone(smollm2_tokenizer):
  pieces = token_pieces(smollm2_tokenizer)
  assert all(p.decode("utf-8", "replace") == smollm2_tokenizer.decode([i], skip_special_tokens=True)
             for i, p in enumerate(pieces))
  assert _gpt2_byte_chars() == {ch: b for b, ch in _bytes_to_unicode().items()}


def test_char_tokenizer(char_tokenizer):
  rng = np.random.default_rng(1)
  tokens = rng.integers(-3, char_tokenizer.vocab_size + 5, size=(50, 30))  # pad/bos/eos and unknown ids
  mask = (rng.random((50, 30)) < 0.9).astype(np.int32)
  texts, truncated = _device_texts(token_table(char_tokenizer), tokens, mask, 30)
  host = [char_tokenizer.decode([i for i in row[m > 0] if i >= 0], skip_special_tokens=True)
          for row, m in zip(tokens, mask)]
  assert texts == host and not truncated.any()


def test_unsupported_tokenizer_is_one_clear_error():
  class SentencePiece:
    _kind, chat_template = "sentencepiece", None
  with pytest.raises(UnsupportedTokenizer, match="use the host reward callback"):
    token_table(SentencePiece())
