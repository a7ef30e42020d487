"""S seeds of one RL method at once: the library's RL iteration with `jax.vmap` over seeds.

The tiny study model leaves the CPU mostly idle per op, so S seeds in one program cost a small
multiple of one. Every piece is the library's own; only the seed axis is new:
  * sampling: the sampler's traced program (`sampling.sampler._sample_program`, the one `Sampler`
    jits) under `jax.vmap` over (params, prompts, key); its output for seed s is handed to the
    library's `train.rollout.sample_and_score` through `replay` (a `Sampler` whose compiled program
    returns that output), so decoding, scoring and truncation are the library's code;
  * advantages and batches: `rollout.select_groups`, `train.batch.assemble_batch` (on device);
  * old log-probs: `train.step.response_token_stats` (the trainer's forward), vmapped, in the same
    row chunks as `train.batch.fill_logprobs`;
  * updates: `train.step.train_step_fn` (loss, accumulation, clipping, AdamW, non-finite skip),
    vmapped over (params, optimizer state, micro-batches), mini-batch order as in `loop.iteration`.
Randomness per seed is the trainer's: prompts from a `PromptPipeline` seeded with the seed, sampling
key fold_in(fold_in(key(seed), step), 0), mini-batch order rng([seed, step, epoch]). So seed s of a
vmapped run is the library's unbatched run of seed s (`tests/experiments/test_vmapped.py` checks the
tokens and rewards agree exactly and the parameters to float32 rounding).

Leaves of seed-stacked pytrees carry a leading S axis (`params_S`, `prompt_SxBxTp`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from simko_jax import hparams
from simko_jax.data.pipeline import PipelineConfig, PromptPipeline
from simko_jax.parallel import make_mesh
from simko_jax.sampling import sampler as sampler_lib
from simko_jax.train import batch as batch_lib
from simko_jax.train import rollout
from simko_jax.train.step import Batch, batch_sharding, is_on_policy, make_optimizer, response_token_stats, train_step_fn


def stack(trees):
  """[tree, ...] -> one tree with a leading seed axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, s: int):
  """Seed s of a seed-stacked tree."""
  return jax.tree.map(lambda x: x[s], tree)


class SeedSampler:
  """The library sampler's program vmapped over seeds: one compilation per static signature."""

  def __init__(self, sampler: sampler_lib.Sampler):
    self.sampler = sampler
    self._programs: dict = {}

  def sample(self, params_S, prompt_SxBxTp, mask_SxBxTp, keys_S, **kw):
    """Tuple of the program's outputs with a leading S axis, and the per-seed `_prepare` args."""
    prepared = [self.sampler._prepare(None, p, m, k, kw["n"], kw["max_new_tokens"],
                                      kw.get("temperature", 1.0), kw.get("top_p", 1.0),
                                      kw.get("top_k", 0), False, None)
                for p, m, k in zip(prompt_SxBxTp, mask_SxBxTp, keys_S)]
    static = prepared[0][1]
    key = tuple(sorted((k, v) for k, v in static.items() if k not in ("mesh", "rules")))
    if key not in self._programs:
      body = functools.partial(sampler_lib._sample_program, self.sampler.graphdef,
                               counter=[0], **static)
      self._programs[key] = jax.jit(jax.vmap(body, in_axes=(0, 0, 0, 0, None, None, None, None)))
    args = [a for a, _ in prepared]
    shared = args[0][4:]
    out = self._programs[key](params_S, jnp.stack([a[1] for a in args]),
                              jnp.stack([a[2] for a in args]), jnp.stack([a[3] for a in args]),
                              *shared)
    return jax.device_get(out)


def replay(sampler: sampler_lib.Sampler, outputs_S, s: int) -> sampler_lib.Sampler:
  """A copy of `sampler` whose compiled program returns seed s of `outputs_S` (already computed), so
  `Sampler.sample`'s own post-processing turns it into the library's `SampleOutput`."""
  twin = copy.copy(sampler)
  row = tuple(np.asarray(x[s]) for x in outputs_S)
  twin._jitted = lambda *args, **static: row
  return twin


@dataclasses.dataclass
class SeedRuns:
  """S RL runs of one method (library config `rc` with seed = seeds[0]; the others differ only in
  the seed) from the same params."""
  rc: object
  seeds: list
  params_S: object
  opt_state_S: object
  iterators: list
  step: int = 0


class VmappedTrainer:
  """One method's compiled pieces: vmapped sampler, log-prob forward and train step."""

  def __init__(self, rc, graphdef, sampler, tokenizer, scorer, train_examples):
    if rc.rollout.dynamic_sampling or rc.rollout.sample_chunk_prompts or rc.algo.kl_coef:
      raise ValueError("the vmapped loop supports rollout.dynamic_sampling = False, "
                       "rollout.sample_chunk_prompts = 0 and algo.kl_coef = 0 only")
    self.rc, self.graphdef, self.tokenizer, self.scorer = rc, graphdef, tokenizer, scorer
    self.sampler, self.seed_sampler = sampler, SeedSampler(sampler)
    self.train_examples = train_examples
    self.loss_cfg = hparams.LossHParams.from_config(rc)
    self.rows = batch_sharding(make_mesh(devices=jax.devices()[:1]), 1)  # one device: the seeds are vmapped
    updates = rc.algo.ppo_epochs * (rc.rollout.prompts_per_step // rc.algo.mini_batch_prompts)
    self.tx, self.schedule = make_optimizer(rc.optim, rc.train.steps * updates)
    self.train_step = jax.jit(jax.vmap(train_step_fn(graphdef, self.tx, self.loss_cfg)),
                              donate_argnums=(0, 1))
    lcfg = dataclasses.replace(self.loss_cfg, entropy_coef=0.0)
    logp = lambda p, t, a, pos, r: response_token_stats(graphdef, p, t, a, pos, r, lcfg).logp
    self.logprobs = jax.jit(jax.vmap(logp, in_axes=(0, 0, 0, 0, None)), static_argnums=4)

  def start(self, params, seeds) -> SeedRuns:
    params_S = stack([jax.tree.map(jnp.copy, params) for _ in seeds])
    opt_state_S = jax.vmap(self.tx.init)(params_S)
    its = []
    for seed in seeds:
      pipe = PromptPipeline(self.train_examples, self.tokenizer, PipelineConfig(
          num_prompts=self.rc.rollout.prompts_per_step, max_prompt_len=self.rc.data.max_prompt_len,
          bucket_size=self.rc.data.prompt_bucket, pad_id=self.tokenizer.pad_id, seed=int(seed),
          num_epochs=self.rc.data.num_epochs, overlong="error"))
      its.append(pipe.iterator())
    return SeedRuns(self.rc, [int(s) for s in seeds], params_S, opt_state_S, its)

  def _batches(self, runs: SeedRuns):
    """Sample, score and build every seed's host `Batch` (the library's rollout functions)."""
    rc, g = self.rc, self.rc.rollout.group_size
    prompts = [next(it) for it in runs.iterators]
    keys = [jax.random.fold_in(jax.random.fold_in(jax.random.key(s), runs.step), 0)
            for s in runs.seeds]
    outputs_S = self.seed_sampler.sample(
        runs.params_S, [p["prompt_tokens"] for p in prompts], [p["prompt_mask"] for p in prompts],
        keys, n=g, max_new_tokens=rc.rollout.max_new_tokens, temperature=rc.rollout.temperature,
        top_p=rc.rollout.top_p, top_k=rc.rollout.top_k)
    batches, metrics = [], []
    for s, p in enumerate(prompts):
      out, scored, _, _ = rollout.sample_and_score(
          replay(self.sampler, outputs_S, s), None, p, keys[s], rc.rollout, self.tokenizer,
          self.scorer.score, rc.rewards.truncated_is_wrong)
      _, padded = rollout.select_groups(scored, rc.rollout.prompts_per_step, g, False)
      batch = batch_lib.assemble_batch(
          (out,), None, jnp.asarray(scored.rewards), group_size=g, advantage=rc.algo.advantage,
          adv_eps=rc.algo.adv_eps, overlong_mask=rc.algo.overlong_mask, sharding=self.rows)
      batches.append(batch)
      record = rollout.rollout_metrics(scored, padded, g)
      record["advantage_abs_mean"] = float(jnp.abs(batch.advantages).mean())
      metrics.append(record)
    return stack(batches), metrics

  def _old_logprobs(self, runs: SeedRuns, batch_S: Batch) -> Batch:
    """`train.batch.fill_logprobs` for every seed: the same row chunks, vmapped over seeds."""
    n, r = batch_S.loss_mask.shape[1:]
    chunk = self.rc.algo.micro_batch_size
    out = [self.logprobs(runs.params_S, batch_S.tokens[:, lo:lo + chunk],
                         batch_S.attention_mask[:, lo:lo + chunk], batch_S.positions[:, lo:lo + chunk], r)
           for lo in range(0, n, chunk)]
    return batch_S._replace(old_logprobs=jnp.concatenate(out, axis=1)[:, :n])

  def iteration(self, runs: SeedRuns) -> list[dict]:
    """One RL step of every seed (`loop.iteration` per seed); returns per-seed metrics."""
    rc, g = self.rc, self.rc.rollout.group_size
    batch_S, roll_metrics = self._batches(runs)
    if not is_on_policy(rc):
      batch_S = self._old_logprobs(runs, batch_S)
    n = batch_S.advantages.shape[1]
    mini, micro = rc.algo.mini_batch_prompts * g, rc.algo.micro_batch_size
    step_metrics = []
    for epoch in range(rc.algo.ppo_epochs):
      orders = [np.random.default_rng([s, runs.step, epoch]).permutation(n) for s in runs.seeds]
      for lo in range(0, n, mini):
        rows_S = jnp.asarray(np.stack([o[lo:lo + mini] for o in orders]))
        mb_S = jax.tree.map(lambda x: jax.vmap(lambda xs, rows: xs[rows])(x, rows_S).reshape(
            (x.shape[0], mini // micro, micro) + x.shape[2:]), batch_S)
        runs.params_S, runs.opt_state_S, m = self.train_step(runs.params_S, runs.opt_state_S, mb_S)
        step_metrics.append(jax.device_get(m))
    out = []
    for s in range(len(runs.seeds)):
      ms = [{k: float(v[s]) for k, v in m.items()} for m in step_metrics]
      record = {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
      record["updates_skipped"] = int(sum(m["update_skipped"] for m in ms))
      record.update(roll_metrics[s])
      record["learning_rate"] = float(self.schedule(runs.step))
      out.append(record)
    runs.step += 1
    return out
