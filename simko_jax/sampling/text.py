"""Text in / text out: chat-template the prompts, left-pad, sample, decode (evaluation and demos).

  texts = generate_text(model, tokenizer, ["What is 2+2?"], max_new_tokens=64, greedy=True)

Returns one string per (prompt, sample): `len(prompts) * n` strings, sample j of prompt i at index
i*n + j (the row order of `SampleOutput`). The stop token is not part of the text.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx

from simko_jax.data.prompts import PromptFormat, prompt_ids
from simko_jax.sampling.sampler import FINISH_STOP, Sampler

# Samplers keyed by (graphdef, pad, stops, buckets): repeated calls reuse the compiled programs.
_SAMPLERS: dict[Any, Sampler] = {}


def _stop_ids(tokenizer, cfg) -> tuple[int, ...]:
  ids = set()
  if getattr(tokenizer, "eos_id", None) is not None:
    ids.add(int(tokenizer.eos_id))
  eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
  for e in (eos if isinstance(eos, (list, tuple)) else [eos]):
    if e is not None:
      ids.add(int(e))
  return tuple(sorted(ids))


def encode_prompts(tokenizer, prompts: Sequence[str], *, chat: bool = True,
                   system_prompt: str | None = None, pad_id: int = 0,
                   max_prompt_len: int | None = None, fmt: PromptFormat | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded (tokens [B, P] int32, mask [B, P] int32) of `prompts` under `fmt` (default: built from
  `chat` / `system_prompt`, no suffix) via `data.prompts.prompt_ids`; see `pad_prompts`."""
  if fmt is None:
    fmt = PromptFormat(system_prompt or "", "", "chat" if chat else "plain")
  return pad_prompts([prompt_ids(fmt, tokenizer, text) for text in prompts], pad_id, max_prompt_len)


def pad_prompts(ids: Sequence[Sequence[int]], pad_id: int = 0,
                max_prompt_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded (tokens [B, P] int32, mask [B, P] int32) of token-id rows; P = the longest row after
  cutting each from the left to `max_prompt_len`. An empty row raises ValueError."""
  ids = [list(row)[-max_prompt_len:] if max_prompt_len is not None else list(row) for row in ids]
  if not ids or any(not row for row in ids):
    raise ValueError("a prompt encodes to no tokens")
  p = max(len(r) for r in ids)
  tokens = np.full((len(ids), p), pad_id, np.int32)
  mask = np.zeros((len(ids), p), np.int32)
  for i, row in enumerate(ids):
    tokens[i, p - len(row):] = row
    mask[i, p - len(row):] = 1
  return tokens, mask


def generate_text(model_or_state: Any, tokenizer, prompts: Sequence[str], *, sampler: Sampler | None = None,
                  n: int = 1, max_new_tokens: int = 256, temperature: float = 1.0, top_p: float = 1.0,
                  top_k: int = 0, greedy: bool = False, seed: int = 0, chat: bool = True,
                  system_prompt: str | None = None, stop_ids: Sequence[int] | None = None,
                  max_prompt_len: int | None = None) -> list[str]:
  """Generate `n` responses per prompt; returns `len(prompts) * n` decoded strings (see module doc).

  model_or_state: a `Transformer` (split here), or its param `nnx.State` together with `sampler` (a
  `Sampler` built on the same graphdef, e.g. with a mesh). tokenizer: `simko_jax.models.Tokenizer`
  (encode/decode/apply_chat_template/eos_id/pad_id). stop_ids: default = tokenizer EOS + the model
  config's eos ids. seed: PRNG seed (same seed -> same texts).
  """
  if isinstance(model_or_state, nnx.Module):
    graphdef, state = nnx.split(model_or_state)
    cfg = getattr(model_or_state, "cfg", None)
  else:
    if sampler is None:
      raise ValueError("pass `sampler=` (built on the model's graphdef) when giving a param state")
    graphdef, state, cfg = sampler.graphdef, model_or_state, None
  pad_id = tokenizer.pad_id if getattr(tokenizer, "pad_id", None) is not None else 0
  stops = tuple(stop_ids) if stop_ids is not None else _stop_ids(tokenizer, cfg)
  if sampler is None:
    cache_key = (graphdef, pad_id, stops)
    if cache_key not in _SAMPLERS:
      _SAMPLERS[cache_key] = Sampler(graphdef, pad_id=pad_id, stop_ids=stops)
    sampler = _SAMPLERS[cache_key]
  tokens, mask = encode_prompts(tokenizer, prompts, chat=chat, system_prompt=system_prompt,
                                pad_id=pad_id, max_prompt_len=max_prompt_len)
  out = sampler.sample(state, tokens, mask, jax.random.key(seed), n=n, max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, top_k=top_k, greedy=greedy, stop_ids=stops)
  response = np.asarray(out.response_tokens)
  lengths = np.asarray(out.response_lengths)
  stopped = np.asarray(out.finish_reason) == FINISH_STOP
  texts = []
  for row, length, stop in zip(response, lengths, stopped):
    texts.append(tokenizer.decode(row[:length - int(stop)].tolist(), skip_special_tokens=True))
  return texts
