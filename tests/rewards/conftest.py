"""Fixtures of the reward tests: the real SmolLM2 tokenizer (loaded once) and the character tokenizer."""
import pytest


@pytest.fixture(scope="session")
def smollm2_tokenizer():
  from simko_jax.models import Tokenizer, smollm2_gguf_path
  return Tokenizer.from_gguf(smollm2_gguf_path())


@pytest.fixture(scope="session")
def char_tokenizer():
  from simko_jax.models.char_tokenizer import CharTokenizer
  return CharTokenizer()
