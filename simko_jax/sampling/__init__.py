"""Batched KV-cache sampling (prefill once, n samples per prompt, jitted while-loop decode) and a
text-in/text-out helper. See `simko_jax.sampling.sampler` for the program layout."""

from simko_jax.sampling.filtering import sample_next
from simko_jax.sampling.sampler import FINISH_LENGTH, FINISH_STOP, SampleOutput, Sampler, round_up

__all__ = ["sample_next", "FINISH_LENGTH", "FINISH_STOP", "SampleOutput", "Sampler", "round_up",
           "generate_text"]


def __getattr__(name):
  if name == "generate_text":  # lazy: pulls in the tokenizer module (jinja2, tokenizers)
    from simko_jax.sampling.text import generate_text
    return generate_text
  raise AttributeError(name)
