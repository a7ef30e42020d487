"""Tokenizer loading from a HF dir (vs transformers) and chat templates; SentencePiece error path."""

import json

import pytest

from simko_jax.models.tokenizer import Tokenizer, render_chat_template

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["The quick brown fox jumps over the lazy dog.", "Solve x + 2 = 5; the answer is \\boxed{3}.",
          "Hello world! 1234 5678", "naïve café"] * 20


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  from tokenizers import Tokenizer as HFTok
  from tokenizers import decoders, models, pre_tokenizers, trainers
  tok = HFTok(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "<|im_start|>", "<|im_end|>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(CORPUS, trainer)
  d = tmp_path_factory.mktemp("tok")
  tok.save(str(d / "tokenizer.json"))
  (d / "tokenizer_config.json").write_text(json.dumps({
      "bos_token": "<s>", "eos_token": {"__type": "AddedToken", "content": "<|im_end|>", "special": True}, "pad_token": "<pad>",
      "chat_template": TEMPLATE, "tokenizer_class": "PreTrainedTokenizerFast"}))
  return d


def test_hf_dir_matches_transformers(hf_dir):
  import transformers
  ours = Tokenizer.load(str(hf_dir))
  ref = transformers.PreTrainedTokenizerFast.from_pretrained(str(hf_dir), local_files_only=True)
  assert (ours.eos_id, ours.pad_id, ours.bos_id) == (3, 0, 1)
  assert ours.vocab_size == len(ref)
  msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
  prompt = ours.apply_chat_template(msgs)
  assert prompt == ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
  assert prompt.startswith("<s><|im_start|>system\nBe brief.<|im_end|>\n") and prompt.endswith("assistant\n")
  assert not ours.apply_chat_template(msgs, add_generation_prompt=False).endswith("assistant\n")
  for text in CORPUS[:4] + [prompt, "unseen wörds ✓"]:
    ids = ours.encode(text)
    assert ids == ref.encode(text, add_special_tokens=False)
    assert ours.decode(ids) == ref.decode(ids)
  assert ours.encode("<|im_end|>") == [3]
  assert ours.decode(ours.encode(prompt), skip_special_tokens=True) == \
      ref.decode(ref.encode(prompt, add_special_tokens=False), skip_special_tokens=True)


def test_template_raise_exception():
  with pytest.raises(ValueError, match="bad role"):
    render_chat_template("{{ raise_exception('bad role') }}", [])


def test_missing_files_and_sentencepiece(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer.json"):
    Tokenizer.load(str(tmp_path))
  try:
    import sentencepiece  # noqa: F401
  except ImportError:
    with pytest.raises(ImportError, match="sentencepiece"):
      Tokenizer.load(str(tmp_path / "x.model"))
