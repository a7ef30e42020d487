"""Supervised warm-up: batch layout, loss = numpy cross-entropy on response tokens only, and it learns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from simko_jax.data.pipeline import tokenize_prompt
from simko_jax.models.char_tokenizer import CharTokenizer
from simko_jax.models.config import tiny_llama3
from simko_jax.models.transformer import Transformer
from simko_jax.train import sft

PROMPTS = ["3 7 4 -> 25", "9 1 -> 9"]
RESPONSES = ["\\boxed{3*7+4}", "\\boxed{9*1}"]
L = 48


def tiny_model(seed=0):
  return Transformer(tiny_llama3(vocab_size=128, hidden_size=32, num_layers=1, num_heads=2,
                                 num_kv_heads=2, head_dim=16, intermediate_size=64),
                     rngs=nnx.Rngs(seed))


def test_batch_layout():
  tok = CharTokenizer()
  b = sft.sft_batch(tok, PROMPTS, RESPONSES, L)
  for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
    prompt_ids = tokenize_prompt(tok, p)
    n_p, n_r = len(prompt_ids), len(r) + 1                  # + eos
    assert b["tokens"][i, :n_p].tolist() == prompt_ids
    assert tok.decode(b["tokens"][i, n_p:n_p + n_r - 1]) == r
    assert b["tokens"][i, n_p + n_r - 1] == tok.eos_id
    assert (b["tokens"][i, n_p + n_r:] == tok.pad_id).all()
    assert b["target_mask"][i].tolist() == [0] * n_p + [1] * n_r + [0] * (L - n_p - n_r)
    assert b["attention_mask"][i].sum() == n_p + n_r
    assert b["positions"][i, :n_p + n_r].tolist() == list(range(n_p + n_r))
  with pytest.raises(ValueError, match="seq_len"):
    sft.sft_batch(tok, PROMPTS, RESPONSES, 20)


def _jitted(graphdef):
  loss = jax.jit(lambda p, b: sft.sft_loss(graphdef, p, b))
  return lambda p, b: loss(p, {k: jnp.asarray(v) for k, v in b.items()})


def test_loss_is_response_only_cross_entropy():
  tok, model = CharTokenizer(), tiny_model()
  graphdef, params = nnx.split(model)
  loss_fn = _jitted(graphdef)
  batch = sft.sft_batch(tok, PROMPTS, RESPONSES, L)
  loss, count = loss_fn(params, batch)
  logits = jax.jit(lambda p, t, pos, a: nnx.merge(graphdef, p)(t, pos, a))(
      params, batch["tokens"], batch["positions"], batch["attention_mask"])
  logits = np.asarray(logits, np.float64)
  top = logits.max(-1, keepdims=True)
  logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
  nll = [-logp[i, t - 1, batch["tokens"][i, t]]
         for i in range(len(PROMPTS)) for t in range(1, L) if batch["target_mask"][i, t]]
  assert int(count) == len(nll) == sum(len(r) + 1 for r in RESPONSES)
  np.testing.assert_allclose(float(loss), np.mean(nll), rtol=1e-5)

  # Only masked-in targets count: an empty mask gives loss 0 (not NaN); supervising the prompt as
  # well gives another value.
  zero_loss, zero_count = loss_fn(params, dict(batch, target_mask=batch["target_mask"] * 0))
  assert float(zero_loss) == 0.0 and int(zero_count) == 0
  with_prompt, _ = loss_fn(params, dict(batch, target_mask=batch["attention_mask"]))
  assert abs(float(with_prompt) - float(loss)) > 1e-3


def test_padding_tail_does_not_change_loss():
  tok, model = CharTokenizer(), tiny_model()
  graphdef, params = nnx.split(model)
  loss_fn = _jitted(graphdef)
  batch = sft.sft_batch(tok, PROMPTS, RESPONSES, L)
  noisy = dict(batch, tokens=np.where(batch["attention_mask"] > 0, batch["tokens"], 50).astype(np.int32))
  np.testing.assert_allclose(float(loss_fn(params, batch)[0]), float(loss_fn(params, noisy)[0]),
                             rtol=1e-6)


def test_loss_decreases_on_a_tiny_batch():
  tok = CharTokenizer()
  params, losses = sft.train_sft(tiny_model(), tok, lambda step, b: (PROMPTS, RESPONSES), steps=40,
                                 batch_size=2, seq_len=L, learning_rate=1e-2)
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.3 * losses[0], losses
