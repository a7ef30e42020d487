"""From problems to verified `ProblemRecord`s: prompt text, sampling, answer extraction, verification.

A `GenerateFn` maps (P problem texts, seed, n) to P lists of n `Generation`s. The texts are the bare
problems: the default one (`sampler_generate_fn`) turns each into prompt tokens with
`data.prompts.prompt_ids` under the eval config's `PromptFormat` (system message, instruction suffix,
chat template: the function and fields training uses) and runs the KV-cache `Sampler`; tests may pass
any function of this signature (e.g. one returning known boxed answers) to check the harness exactly.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from simko_jax.data.prompts import format_from_eval_config, prompt_ids
from simko_jax.data.sources import Example
from simko_jax.eval.store import ProblemRecord
from simko_jax.rewards.extract import (extract_gsm8k_answer, extract_math_answer_chain, last_boxed_content,
                                       last_number, normalize_answer)
from simko_jax.rewards.registry import chained_math_reward, final_number_reward, get_reward_fn, gsm8k_reward


class Generation(NamedTuple):
  """One sampled response: decoded text (stop token removed), generated tokens (incl. the stop token),
  and whether it ran out of max_new_tokens (finish_reason == length)."""
  text: str
  num_tokens: int
  truncated: bool


GenerateFn = Callable[..., list[list[Generation]]]  # (problems: Sequence[str], seed: int, n: int)


def batch_seed(seed: int, benchmark: str, batch_index: int) -> int:
  """Deterministic sampling seed of one problem batch: depends only on (seed, benchmark, batch index),
  so a resumed run re-draws exactly the samples the interrupted run would have drawn."""
  state = np.random.SeedSequence([int(seed), zlib.crc32(benchmark.encode()), int(batch_index)])
  return int(state.generate_state(1)[0] & 0x7FFFFFFF)


def canonical_answer(response: str, data_source: str, math_extraction: str = "boxed") -> str | None:
  """The answer a majority vote counts, extracted as the reward extracts it: the GSM8K-style number for
  GSM8K sources, the boxed -> "the answer is" -> last number chain under
  `math_extraction="boxed_answer_is_number"`, else the last `\\boxed{}` content; normalised; None when
  nothing can be extracted."""
  try:
    fn = get_reward_fn(data_source, default="math", math_extraction=math_extraction)
  except KeyError:
    fn = None
  if fn is gsm8k_reward:
    raw = extract_gsm8k_answer(response)
  elif fn is chained_math_reward:
    raw = extract_math_answer_chain(response)
  elif fn is final_number_reward:
    raw = last_boxed_content(response) or last_number(response)
  else:
    raw = last_boxed_content(response)
  if raw is None:
    return None
  norm = normalize_answer(raw)
  return norm if norm else None


def verify_batch(pool, examples: Sequence[Example], generations: Sequence[Sequence[Generation]],
                 truncated_is_wrong: bool = False, math_extraction: str = "boxed") -> list[ProblemRecord]:
  """Score every response of every problem with one `pool.score` call; one record per problem.

  With `truncated_is_wrong`, a response cut by max_new_tokens is wrong whatever its text (the
  trainer's `rewards.truncated_is_wrong`, so its evals count what its rewards count).
  """
  triples = [(g.text, ex.ground_truth, ex.data_source) for ex, gens in zip(examples, generations)
             for g in gens]
  rewards = pool.score(triples) if triples else []
  records, pos = [], 0
  for ex, gens in zip(examples, generations):
    scores = rewards[pos:pos + len(gens)]
    pos += len(gens)
    records.append(ProblemRecord(
        index=int(ex.index), data_source=ex.data_source, ground_truth=ex.ground_truth,
        responses=[g.text for g in gens],
        correct=[bool(s > 0.5) and not (truncated_is_wrong and g.truncated)
                 for s, g in zip(scores, gens)],
        answers=[canonical_answer(g.text, ex.data_source, math_extraction) for g in gens],
        num_tokens=[int(g.num_tokens) for g in gens], truncated=[bool(g.truncated) for g in gens]))
  return records


def _stop_ids(tokenizer, model_cfg) -> tuple[int, ...]:
  ids = set()
  if getattr(tokenizer, "eos_id", None) is not None:
    ids.add(int(tokenizer.eos_id))
  eos = getattr(model_cfg, "eos_token_id", None) if model_cfg is not None else None
  for e in (eos if isinstance(eos, (list, tuple)) else [eos]):
    if e is not None:
      ids.add(int(e))
  return tuple(sorted(ids))


def sampler_generate_fn(model_or_state: Any, tokenizer, cfg, *, sampler=None, mesh=None) -> GenerateFn:
  """A `GenerateFn` over the KV-cache `Sampler`.

  model_or_state: a `Transformer`, or its param state together with `sampler` (built on its graphdef,
  e.g. the trainer's, with the trainer's mesh). cfg: the eval config (temperature, top_p, top_k,
  max_new_tokens, max_prompt_len and the prompt fields of `format_from_eval_config`). With `mesh` and
  no `sampler`, the sampler shards rows over the mesh (the params must already be placed on it).
  """
  import jax
  from flax import nnx

  from simko_jax.sampling import Sampler
  from simko_jax.sampling.text import pad_prompts

  if isinstance(model_or_state, nnx.Module):
    graphdef, state = nnx.split(model_or_state)
    model_cfg = getattr(model_or_state, "cfg", None)
  else:
    if sampler is None:
      raise ValueError("pass `sampler=` (built on the model's graphdef) when giving a param state")
    graphdef, state, model_cfg = sampler.graphdef, model_or_state, None
  pad_id = tokenizer.pad_id if getattr(tokenizer, "pad_id", None) is not None else 0
  stops = _stop_ids(tokenizer, model_cfg) if sampler is None else None  # None = the sampler's own set
  if sampler is None:
    sampler = Sampler(graphdef, pad_id=pad_id, stop_ids=stops, mesh=mesh)
  fmt = format_from_eval_config(cfg)

  def generate(problems: Sequence[str], seed: int, n: int | None = None) -> list[list[Generation]]:
    # Multi-process: every process encodes all P prompts (one common padded length Tp), samples its
    # own contiguous P / process_count rows of the global batch (the sampler assembles the global array
    # and returns this host's rows), and the decoded texts are all-gathered in process order, so
    # every process returns the same list as a single-process run on the same mesh.
    n = int(cfg.num_samples if n is None else n)
    tokens_PxTp, mask_PxTp = pad_prompts([prompt_ids(fmt, tokenizer, p) for p in problems], pad_id,
                                       cfg.max_prompt_len)
    rows = _process_rows(len(problems))
    out = sampler.sample(state, tokens_PxTp[rows], mask_PxTp[rows], jax.random.key(seed), n=n,
                         max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                         top_p=cfg.top_p, top_k=cfg.top_k, stop_ids=stops)
    local = _decode_rows(tokenizer, out, rows.stop - rows.start, n)
    if jax.process_count() == 1:
      return local
    from simko_jax.train.distributed import gather_json
    return [[Generation(*g) for g in gens] for part in gather_json(local) for gens in part]

  return generate


def _process_rows(batch: int) -> slice:
  """This process's contiguous share of a batch of `batch` prompts (all of it in one process)."""
  import jax
  count, index = jax.process_count(), jax.process_index()
  if batch % count:
    raise ValueError(f"a batch of {batch} prompts cannot be split evenly over {count} processes")
  share = batch // count
  return slice(index * share, (index + 1) * share)


def _decode_rows(tokenizer, out, num_prompts: int, n: int) -> list[list[Generation]]:
  """`num_prompts` lists of n `Generation`s from a `SampleOutput` of B = num_prompts * n rows (rows
  p*n .. p*n+n-1 are prompt p's responses)."""
  from simko_jax.sampling import FINISH_LENGTH
  response_BxR = np.asarray(out.response_tokens)
  lengths_B = np.asarray(out.response_lengths)
  truncated_B = np.asarray(out.finish_reason) == FINISH_LENGTH
  result: list[list[Generation]] = []
  for p in range(num_prompts):
    row_gens = []
    for r in range(p * n, (p + 1) * n):
      keep = int(lengths_B[r]) - (0 if truncated_B[r] else 1)  # drop the stop token's text
      text = tokenizer.decode(response_BxR[r, :keep].tolist(), skip_special_tokens=True)
      row_gens.append(Generation(text, int(lengths_B[r]), bool(truncated_B[r])))
    result.append(row_gens)
  return result
