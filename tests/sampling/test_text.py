"""`generate_text`: chat template -> left-padded ids -> sampler -> decoded strings (tiny byte tokenizer)."""

import jax
import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

from simko_jax.models import tiny_llama3
from simko_jax.models.tokenizer import Tokenizer
from simko_jax.sampling import Sampler, generate_text
from simko_jax.sampling.text import encode_prompts
from tests.sampling.helpers import make_model

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tokenizer():
  """Byte-level tokenizer without merges: ids 0..255 are bytes, 256/257/258 are im_start/im_end/pad."""
  alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
  backend = HFTokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  backend.add_special_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>", "<pad>")])
  return Tokenizer(backend, eos_id=257, pad_id=258, chat_template=TEMPLATE, eos_token="<|im_end|>")


@pytest.fixture(scope="module")
def model():
  return make_model(tiny_llama3(vocab_size=260, eos_token_id=257, pad_token_id=258), seed=4)


def test_generate_text_matches_sampler_and_decodes(tokenizer, model):
  prompts = ["hi", "what is 2+2?"]
  tokens, mask = encode_prompts(tokenizer, prompts, pad_id=tokenizer.pad_id)
  assert tokens[0, -mask[0].sum()] == 256 and (tokens[0, :-mask[0].sum()] == 258).all()  # left-padded
  texts = generate_text(model, tokenizer, prompts, max_new_tokens=6, greedy=True)
  sampler, state = Sampler.from_model(model)
  out = sampler.sample(state, tokens, mask, jax.random.key(0), max_new_tokens=6, greedy=True, stop_ids=(257,))
  want = []
  for row, length, reason in zip(np.asarray(out.response_tokens), np.asarray(out.response_lengths),
                                 np.asarray(out.finish_reason)):
    want.append(tokenizer.decode(row[:length - (reason == 0)].tolist(), skip_special_tokens=True))
  assert texts == want and all(isinstance(t, str) for t in texts)


def test_generate_text_n_samples_and_stop_text_removed(tokenizer, model):
  texts = generate_text(model, tokenizer, ["a", "b"], n=3, max_new_tokens=5, seed=1)
  assert len(texts) == 6
  assert texts == generate_text(model, tokenizer, ["a", "b"], n=3, max_new_tokens=5, seed=1)
  # Stop on the first greedy token: the response is just the stop token, whose text is dropped.
  tokens, mask = encode_prompts(tokenizer, ["a"], pad_id=tokenizer.pad_id)
  sampler, state = Sampler.from_model(model)
  first = int(sampler.sample(state, tokens, mask, jax.random.key(0), max_new_tokens=1, greedy=True,
                             stop_ids=()).response_tokens[0, 0])
  assert generate_text(model, tokenizer, ["a"], max_new_tokens=5, greedy=True, stop_ids=[first]) == [""]
