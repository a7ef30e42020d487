"""Shared helpers for the evaluation tests: a byte-level tokenizer with a chat template, a tiny random
model that matches it, and a fake `GenerateFn` whose correct-answer counts are known exactly."""

from __future__ import annotations

import numpy as np
from flax import nnx
from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

from simko_jax.data.sources import Example
from simko_jax.eval.generation import Generation
from simko_jax.models import Transformer, tiny_llama3
from simko_jax.models.tokenizer import Tokenizer

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_tokenizer() -> Tokenizer:
  """ids 0..255 are bytes; 256/257/258 are <|im_start|>/<|im_end|> (EOS)/<pad>."""
  alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
  backend = HFTokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  backend.add_special_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>", "<pad>")])
  return Tokenizer(backend, eos_id=257, pad_id=258, chat_template=TEMPLATE, eos_token="<|im_end|>")


def tiny_model(seed: int = 0) -> Transformer:
  return Transformer(tiny_llama3(vocab_size=260, eos_token_id=257, pad_token_id=258), rngs=nnx.Rngs(seed))


def toy_examples(num: int, source: str = "math") -> list[Example]:
  """Problems with integer answers; `index` = 100 + i (not the list position, on purpose)."""
  return [Example(prompt=f"toy problem {i}: what is {i} + {i}?", ground_truth=str(2 * i), data_source=source,
                  index=100 + i) for i in range(num)]


class FakeGenerate:
  """`GenerateFn` for toy problems: problem i gets exactly `correct[i]` correct boxed answers among n.

  Wrong answers are \\boxed{-1} or \\boxed{-2} alternately (so maj@k has real competitors); the last
  sample of every problem is marked truncated. The sample order is shuffled by the seed (pass@k is
  order-free). `calls` records (prompt, seed) of every sampled row; `fail_after` raises on that call.
  """

  def __init__(self, n: int, correct: dict[int, int], fail_after: int | None = None):
    self.n, self.correct, self.fail_after = n, correct, fail_after
    self.calls: list[tuple[str, int]] = []
    self.num_calls = 0

  def __call__(self, prompts, seed, n=None):
    assert n in (None, self.n), f"the harness asked for n={n}, this fake draws {self.n}"
    if self.fail_after is not None and self.num_calls >= self.fail_after:
      raise RuntimeError("simulated crash")
    self.num_calls += 1
    out = []
    for prompt in prompts:
      self.calls.append((prompt, seed))
      i = int(prompt.split(":")[0].split()[-1])
      c = self.correct[i]
      texts = [f"so \\boxed{{{2 * i}}}" if j < c else f"\\boxed{{{-1 - (j % 2)}}}" for j in range(self.n)]
      order = np.random.default_rng(seed + i).permutation(self.n)
      out.append([Generation(texts[j], 3 + j, j == self.n - 1) for j in order])
    return out
