"""SentencePiece tokenizers (Gemma layout): token-for-token agreement with transformers' tokenizer for the
same files, chat templates, BOS / special tokens, round trips, and bad input (one-line errors)."""

import shutil

import pytest

from simko_jax.models.errors import ModelLoadError
from simko_jax.models.tokenizer import Tokenizer
from tests.models.sentencepiece_helpers import (GEMMA2_TEMPLATE, GEMMA3_TEMPLATE, SPECIALS, TURN_MARKERS,
                                                train_sentencepiece, write_gemma_tokenizer)

SAMPLE = [
    "", " ", "  ", "\n", "\n\n\n", "\t",
    "The quick brown fox jumps over the lazy dog.",
    " leading space", "   three leading spaces", "trailing spaces   ", "a  b   c    d     e",
    "line one\nline two\n\nline four\r\nwindows line",
    "Solve $x^2 + 2x - 3 = 0$; the answer is $\\boxed{-3}$.",
    "\\[\\int_0^1 x^2\\,dx = \\frac{1}{3}\\] and \\(\\sqrt{2} \\approx 1.41421\\)",
    "\\boxed{\\dfrac{\\pi}{4}}", "12345678901234567890", "3.14159 -0.5 1e-10 50% $1,000",
    "naïve café déjà vu Ångström", "数学问题 答案是三", "未见过的汉字：龘靐齉", "emoji 🤖🎉 and ∑∫∂ symbols",
    "mixed: résumé 数学 🤖 x²", "tabs\tand\t\ttabs", "  \n  \t  \n",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>",
    "<bos>text with <eos> and <pad> and <mask> inside<unk>",
    "partial markers <start_of_turn <end_of_turn>> <bos",
]


@pytest.fixture(scope="module")
def model_proto():
  return train_sentencepiece()


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory, model_proto):
  return write_gemma_tokenizer(tmp_path_factory.mktemp("gemma_tok"), model_proto)


@pytest.fixture(scope="module")
def pair(gemma_dir):
  """(ours, transformers') tokenizers for the same Gemma-style dir (tokenizer.model, no tokenizer.json)."""
  import transformers
  ref = transformers.AutoTokenizer.from_pretrained(str(gemma_dir), local_files_only=True)
  assert type(ref).__name__ == "GemmaTokenizer"
  ours = Tokenizer.load(str(gemma_dir))
  assert ours._kind == "sentencepiece"
  return ours, ref


def test_ids_and_special_tokens_match_transformers(pair):
  ours, ref = pair
  assert (ours.pad_id, ours.eos_id, ours.bos_id) == (ref.pad_token_id, ref.eos_token_id, ref.bos_token_id) \
      == (0, 1, 2)
  assert ours.vocab_size == len(ref)
  assert [ours.token_to_id(t) for t in SPECIALS + TURN_MARKERS] == ref.convert_tokens_to_ids(
      list(SPECIALS + TURN_MARKERS)) == list(range(7))
  assert ours.stop_ids == (1, 6)  # <eos> and <end_of_turn>
  assert ours.bos_token == "<bos>" and ours.eos_token == "<eos>"


@pytest.mark.parametrize("add_special_tokens", [False, True])
def test_encode_matches_transformers(pair, add_special_tokens):
  ours, ref = pair
  for text in SAMPLE:
    assert ours.encode(text, add_special_tokens=add_special_tokens) == \
        ref.encode(text, add_special_tokens=add_special_tokens), repr(text)
  assert ours.encode("hi", add_special_tokens=True)[0] == ours.bos_id  # Gemma prepends <bos>


def test_encode_uses_byte_fallback_and_one_id_per_marker(pair):
  ours, _ = pair
  sp = ours._backend.sp
  emoji = ours.encode("🤖")
  assert len(emoji) == 4 and all(sp.is_byte(i) for i in emoji)  # 4 UTF-8 bytes, no <unk>
  assert ours.encode("<start_of_turn>user\n")[0] == 5 and ours.encode("x<end_of_turn>")[-1] == 6
  assert ours.encode("<bos>") == [2]  # control pieces are matched in text, as transformers does


@pytest.mark.parametrize("skip", [False, True])
def test_decode_matches_transformers_and_round_trips(pair, skip):
  ours, ref = pair
  for text in SAMPLE:
    ids = ours.encode(text)
    assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), repr(text)
    if not skip:
      assert ours.decode(ids) == text, repr(text)
  ids = ours.encode("<start_of_turn>model\n42<end_of_turn>", add_special_tokens=True)
  assert ours.decode(ids, skip_special_tokens=True) == "model\n42"


# Pieces of random test strings: ASCII, whitespace runs, LaTeX, accents, CJK, emoji, invisible spaces,
# turn markers and control-token text.
POOL = list("abcxyz ABC  \n\t0123456789$\\{}^_+-=()[].,;:!?") + [
    "é", "ï", "Å", "数", "学", "龘", "🤖", "🎉", "∑", "\u00a0", "\u3000", "\u200b", "x²", "\r\n", "   ",
    "\\boxed{", "\\frac", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<start_of_"]


def test_random_strings_and_random_ids_match_transformers(pair):
  """Seeded random texts encode alike; random id sequences (what a sampler emits: broken UTF-8 byte
  runs, special tokens anywhere, ids past the vocabulary) decode alike."""
  import random
  ours, ref = pair
  rng = random.Random(0)
  for _ in range(300):
    text = "".join(rng.choice(POOL) for _ in range(rng.randrange(0, 30)))
    assert ours.encode(text) == ref.encode(text, add_special_tokens=False), repr(text)
  for _ in range(300):
    ids = [rng.randrange(ours.vocab_size + 4) for _ in range(rng.randrange(1, 30))]
    for skip in (False, True):
      assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), ids


@pytest.mark.parametrize("template, messages", [
    (GEMMA3_TEMPLATE, [{"role": "system", "content": "Answer with \\boxed{}."},
                       {"role": "user", "content": "What is 2+2?"},
                       {"role": "assistant", "content": "  $2+2 = \\boxed{4}$ 🎉\n"},
                       {"role": "user", "content": "And 数学 3*3?"}]),
    (GEMMA2_TEMPLATE, [{"role": "user", "content": "What is 2+2?"},
                       {"role": "assistant", "content": "The answer is \\boxed{4}."},
                       {"role": "user", "content": " And  3*3?\n"}]),
])
def test_chat_template_matches_transformers(tmp_path, model_proto, template, messages):
  import transformers
  path = write_gemma_tokenizer(tmp_path, model_proto, template=template)
  ours = Tokenizer.load(str(path))
  ref = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
  prompt = ours.apply_chat_template(messages, add_generation_prompt=True)
  assert prompt == ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  assert prompt.startswith("<bos><start_of_turn>user\n") and prompt.endswith("<start_of_turn>model\n")
  ref_ids = ref.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
  assert ours.encode(prompt) == list(ref_ids)
  assert ours.encode(prompt).count(ours.bos_id) == 1  # the template's <bos>, not a second one
  assert ours.encode(prompt).count(6) == sum(m["role"] != "system" for m in messages)  # <end_of_turn>


def test_tokenizer_json_wins_over_tokenizer_model(tmp_path, pair):
  """A dir with both files (what transformers saves, and Gemma ships) loads tokenizer.json, as
  transformers does; both encode alike."""
  ours, ref = pair
  ref.save_pretrained(str(tmp_path))
  shutil.copy(ours._backend.source, tmp_path / "tokenizer.model")
  both = Tokenizer.load(str(tmp_path))
  assert both._kind == "tokenizers"
  for text in SAMPLE:
    assert both.encode(text) == ours.encode(text), repr(text)
  assert (both.eos_id, both.bos_id, both.pad_id, both.stop_ids) == (1, 2, 0, (1, 6))


def test_bare_model_file(gemma_dir):
  """A `.model` file without its config: the model's own bos / eos / pad pieces."""
  tok = Tokenizer.load(str(gemma_dir / "tokenizer.model"))
  assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.stop_ids) == (0, 1, 2, (1, 6))  # a piece: <end_of_turn>
  assert tok.encode("x", add_special_tokens=True)[0] == 2
  assert tok.encode("<start_of_turn>")[0] == 5  # user-defined pieces are whole even without a config
  assert tok.chat_template is None


def test_not_a_sentencepiece_model_is_one_line(tmp_path, gemma_dir):
  for name, data in [("garbage", b"\x00\x01 not a protobuf \xff" * 10), ("json", b'{"model": "bpe"}'),
                     ("empty", b"")]:
    path = tmp_path / name
    shutil.copytree(gemma_dir, path)
    (path / "tokenizer.model").write_bytes(data)
    with pytest.raises(ModelLoadError) as err:
      Tokenizer.load(str(path))
    message = str(err.value)
    assert "\n" not in message and "tokenizer.model" in message and "SentencePiece model" in message, message
  with pytest.raises(ModelLoadError, match="does not exist"):
    Tokenizer.load(str(tmp_path / "missing.model"))


def test_checkpoint_tokenizer_files_round_trip(tmp_path, pair):
  """`save_tokenizer` (trainer checkpoints, HF exports) writes tokenizer.model + config; both we and
  transformers read it back to the same ids."""
  import transformers

  from simko_jax.models.tokenizer_files import load_tokenizer, save_tokenizer
  ours, ref = pair
  save_tokenizer(ours, tmp_path / "saved", model_max_length=4096)
  back = load_tokenizer(tmp_path / "saved")
  # The saved directory as is, marker included (transformers picks its backend by file-name substrings).
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"), local_files_only=True)
  assert hf.chat_template == ours.chat_template
  assert back._kind == "sentencepiece" and back.chat_template == ours.chat_template
  assert (back.eos_id, back.bos_id, back.pad_id, back.stop_ids, back.vocab_size) == \
      (ours.eos_id, ours.bos_id, ours.pad_id, ours.stop_ids, ours.vocab_size)
  for text in SAMPLE:
    ids = ours.encode(text, add_special_tokens=True)
    assert back.encode(text, add_special_tokens=True) == hf.encode(text) == ids, repr(text)
    assert back.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


def test_vocab_larger_than_the_checkpoint_is_one_line(tmp_path, gemma_dir, pair):
  import json

  from simko_jax.models import tiny_qwen2
  from simko_jax.models.tokenizer import check_vocab_size
  from simko_jax.train.policy_source import load_tokenizer_of, locate
  ours, _ = pair
  check_vocab_size(ours, 640, "config.json vocab_size")  # equal sizes and a padded model vocab are fine
  check_vocab_size(ours, 1024, "config.json vocab_size")
  ckpt = tmp_path / "ckpt"
  shutil.copytree(gemma_dir, ckpt)
  (ckpt / "config.json").write_text(json.dumps(tiny_qwen2(vocab_size=600).to_hf_config()))
  with pytest.raises(ModelLoadError) as err:
    load_tokenizer_of(locate(str(ckpt)))
  message = str(err.value)
  assert "\n" not in message, message
  for part in ("tokenizer.model has 640 token ids", f"{ckpt / 'config.json'} vocab_size = 600"):
    assert part in message, (part, message)
  (ckpt / "config.json").write_text(json.dumps(tiny_qwen2(vocab_size=640).to_hf_config()))
  assert load_tokenizer_of(locate(str(ckpt))).encode("x = 1") == ours.encode("x = 1")


def test_training_refuses_a_tokenizer_larger_than_the_model(tmp_path, gemma_dir):
  """`load_model_and_tokenizer` (the trainer's loader) checks the checkpoint's tokenizer against its
  config.json vocab_size after loading the weights."""
  import ml_collections
  from flax import nnx

  from simko_jax.models import Transformer, save_hf, tiny_qwen2
  from simko_jax.train.model_source import load_model_and_tokenizer
  ckpt = tmp_path / "ckpt"
  save_hf(Transformer(tiny_qwen2(vocab_size=600), rngs=nnx.Rngs(0)), str(ckpt))
  for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(gemma_dir / name, ckpt / name)
  model_cfg = ml_collections.ConfigDict(dict(checkpoint=str(ckpt), dtype="float32", param_dtype="float32",
                                             remat="none", attention_impl="xla"))
  with pytest.raises(ModelLoadError) as err:
    load_model_and_tokenizer(model_cfg)
  assert "\n" not in str(err.value)
  assert f"has 640 token ids but {ckpt / 'config.json'} vocab_size = 600" in str(err.value), str(err.value)
