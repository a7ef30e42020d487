"""The RL loop: sample -> reward -> advantage -> old log-probs -> PPO epochs of jitted updates.

`run(cfg)` trains for `cfg.train.steps` iterations, resuming from the newest checkpoint in
`cfg.out_dir/checkpoints` if there is one, and
  * logs every step to metrics.jsonl, TensorBoard and a progress bar (`train.logger`);
  * saves asynchronously every `checkpoint.every` steps and at the end;
  * on SIGTERM (e.g. TPU preemption) finishes the current step, saves, waits for the save, exits 0;
  * skips an update whose loss or gradient is not finite (params untouched), logs the step and the
    example ids of the batch, and stops with an error after `train.max_nonfinite_in_a_row` in a row;
  * runs a pass@k evaluation on held-out problems before and after training when `eval.enabled`.
Randomness is a pure function of (seed, step): a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jax
import numpy as np

from simko_jax.train import rollout
from simko_jax.train.setup import Run, build_run, save
from simko_jax.train.step import is_on_policy


class NonFiniteError(RuntimeError):
  """Too many consecutive updates had a non-finite loss or gradient."""


def iteration(run: Run, logger) -> dict:
  """One RL iteration at `run.step`; updates `run.params` / `run.opt_state` in place."""
  cfg, g = run.cfg, run.cfg.rollout.group_size
  timings: dict = {}
  step_key = jax.random.fold_in(run.rng, run.step)
  parts = []
  for round_ in range(1 + (cfg.rollout.max_refill_rounds if cfg.rollout.dynamic_sampling else 0)):
    prompts = next(run.iterator)
    round_key = jax.random.fold_in(step_key, round_)
    chunks = rollout.split_prompts(prompts, cfg.rollout.sample_chunk_prompts)
    # One chunk keeps the round's own key, so unchunked runs sample exactly as before chunking.
    parts.append(rollout.Groups.concat([
        rollout.sample_groups(run.sampler, run.params, chunk,
                              jax.random.fold_in(round_key, i) if len(chunks) > 1 else round_key,
                              cfg.rollout, run.tokenizer, run.pool.score, timings,
                              cfg.rewards.truncated_is_wrong)
        for i, chunk in enumerate(chunks)]))
    if not cfg.rollout.dynamic_sampling:
      break
    done = rollout.select_groups(parts, cfg.rollout.prompts_per_step, g, True)[1] == 0
    if done:
      break
  groups, padded = rollout.select_groups(parts, cfg.rollout.prompts_per_step, g,
                                         cfg.rollout.dynamic_sampling)
  advantages = rollout.advantages_for(groups.rewards.reshape(-1, g), cfg.algo).reshape(-1)
  batch = rollout.build_batch(groups, advantages, cfg.algo.overlong_mask)

  start = time.perf_counter()
  chunk = cfg.algo.micro_batch_size
  if not is_on_policy(cfg):  # on-policy steps take old log-probs from the update's own forward
    batch = batch._replace(old_logprobs=rollout.batched_logprobs(
        run.logprob_fn, run.params, batch, chunk, run.put_rows))
  if run.ref_params is not None:
    batch = batch._replace(ref_logprobs=rollout.batched_logprobs(
        run.logprob_fn, run.ref_params, batch, chunk, run.put_rows))
  timings["old_logprob_s"] = time.perf_counter() - start

  start = time.perf_counter()
  metrics_list, skipped = [], 0
  n = batch.advantages.shape[0]
  mini = cfg.algo.mini_batch_prompts * g
  micro = cfg.algo.micro_batch_size
  for epoch in range(cfg.algo.ppo_epochs):
    order = np.random.default_rng([cfg.seed, run.step, epoch]).permutation(n)
    for lo in range(0, n, mini):
      rows = order[lo:lo + mini]
      mb = jax.tree.map(lambda x: x[rows].reshape((mini // micro, micro) + x.shape[1:]), batch)
      with jax.set_mesh(run.mesh):  # the model's activation sharding constraints apply when traced
        run.params, run.opt_state, m = run.train_step(run.params, run.opt_state,
                                                      run.put_rows_micro(mb))
      m = jax.device_get(m)
      skipped += int(m["update_skipped"])
      metrics_list.append(m)
  timings["update_s"] = time.perf_counter() - start

  metrics = {k: float(np.mean([m[k] for m in metrics_list])) for k in metrics_list[0]}
  metrics["updates_skipped"] = skipped
  metrics.update(rollout.rollout_metrics(groups, batch, padded, g))
  trained_tokens = float(batch.attention_mask.sum()) * cfg.algo.ppo_epochs
  metrics.update(
      sample_s=timings["sample_s"], reward_s=timings["reward_s"],
      old_logprob_s=timings["old_logprob_s"], update_s=timings["update_s"],
      sample_tokens_per_s=timings["sampled_tokens"] / max(timings["sample_s"], 1e-9),
      train_tokens_per_s=trained_tokens / max(timings["update_s"], 1e-9),
      learning_rate=float(run.schedule(run.step)),
      sampler_compilations=run.sampler.num_compilations)
  if skipped:
    logger.event(f"step {run.step}: {skipped} update(s) skipped (non-finite loss or gradient); "
                 f"prompt example ids {groups.example_ids}")
  return metrics


def _install_sigterm(run: Run):
  def handler(signum, frame):
    del signum, frame
    run.stop_requested = True
  return signal.signal(signal.SIGTERM, handler)


def run(cfg) -> dict:
  """Trains per `cfg` (see module doc); returns the last step's metrics."""
  from simko_jax.train.logger import MetricsLogger
  from simko_jax.train import evaluation

  tr = build_run(cfg)
  logger = MetricsLogger(cfg.out_dir, cfg.train.steps, tr.step)
  previous = _install_sigterm(tr)
  last, nonfinite_streak = {}, 0
  try:
    if tr.step:
      logger.event(f"resumed from checkpoint step {tr.step} in {tr.checkpointer.directory}")
    elif cfg.eval.enabled:
      evaluation.evaluate_run(tr, "before", logger)
    while tr.step < cfg.train.steps and not tr.stop_requested:
      last = iteration(tr, logger)
      tr.step += 1
      logger.log(tr.step, last)
      nonfinite_streak = nonfinite_streak + 1 if last["updates_skipped"] else 0
      if nonfinite_streak >= cfg.train.max_nonfinite_in_a_row:
        raise NonFiniteError(
            f"{nonfinite_streak} consecutive steps had non-finite losses or gradients (limit "
            f"config.train.max_nonfinite_in_a_row = {cfg.train.max_nonfinite_in_a_row}); parameters "
            "were left untouched and the last checkpoint is intact")
      save(tr)
    if tr.stop_requested:
      logger.event(f"SIGTERM: saving step {tr.step} before exiting")
    if tr.checkpointer.latest_step() != tr.step:
      save(tr, force=True)
    tr.checkpointer.wait()
    if not tr.stop_requested and cfg.eval.enabled and tr.step >= cfg.train.steps:
      evaluation.evaluate_run(tr, "after", logger)
  finally:
    signal.signal(signal.SIGTERM, previous)
    logger.close()
    tr.close()
  if jax.process_index() == 0:
    with open(os.path.join(cfg.out_dir, "final_metrics.json"), "w") as f:
      json.dump({"step": tr.step, **last}, f, indent=1)
  return last
