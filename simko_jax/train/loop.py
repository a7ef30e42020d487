"""The RL loop: sample -> reward -> advantage -> old log-probs -> PPO epochs of jitted updates.

`run(cfg)` trains for `cfg.train.steps` iterations, resuming from the newest checkpoint in
`cfg.out_dir/checkpoints` if there is one, and
  * logs every step to metrics.jsonl, TensorBoard and a progress bar (`train.logger`);
  * saves asynchronously every `checkpoint.every` steps and at the end;
  * on SIGTERM (e.g. TPU preemption) to any one process, every process finishes the same step,
    saves it, waits for the save and exits 0 (`train.preemption`: the stop is agreed on once per
    step, before the step; bound: the rest of one step plus one save). A SIGTERM while the run is
    being built is honoured once it is built: no step is trained, the "before" eval is skipped, the
    start state is saved if there is no checkpoint yet. A SIGTERM during the "before" eval ends the
    run after the eval; one during the "after" eval (the final step is saved by then) is ignored;
  * skips an update whose loss or gradient is not finite (params untouched), logs the step and the
    example ids of the batch, and stops with an error after `train.max_nonfinite_in_a_row` in a row;
  * appends the example ids each step consumed (process 0's share) to `data_order.jsonl` (a step
    redone after a crash appears twice, with the same ids), so data order across restarts is auditable;
  * runs a pass@k evaluation on held-out problems before and after training when `eval.enabled`.
Randomness is a pure function of (seed, step): a resumed run continues exactly as an uninterrupted one.

Test-only fault injection (tests/faults/): `SIMKO_FAULT_AT="<point>:<step>[,...]"` with point one of
`sample` (SIGKILL in the sampling phase, once the step's prompts are drawn), `update` (SIGKILL after the
step's first optimizer update), `save` (SIGKILL right after the step's async checkpoint save started),
`nan` (NaN advantages: every update of that step is non-finite), `sigterm` (this process sends itself
SIGTERM in the sampling phase; `sigterm:0`: right after the run is built, before the first step).
`<step>` is the 1-based step number (as in metrics.jsonl and checkpoint names). Unset in normal runs:
the checks cost one dict lookup.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jax
import numpy as np
from absl import logging as absl_logging

from simko_jax import storage
from simko_jax.train import preemption, rollout
from simko_jax.train.setup import Run, build_run, save
from simko_jax.train.step import is_on_policy


class NonFiniteError(RuntimeError):
  """Too many consecutive updates had a non-finite loss or gradient."""


def _fault(point: str, step: int) -> bool:
  """Test-only fault injection (module doc): SIGKILLs this process at kill points, sends it SIGTERM
  for `sigterm`; True for `nan`."""
  spec = os.environ.get("SIMKO_FAULT_AT")
  if not spec or f"{point}:{step}" not in spec.split(","):
    return False
  if point != "nan":
    os.kill(os.getpid(), signal.SIGTERM if point == "sigterm" else signal.SIGKILL)
  return True


def iteration(run: Run, logger) -> dict:
  """One RL iteration at `run.step`; updates `run.params` / `run.opt_state` in place."""
  cfg, g = run.cfg, run.cfg.rollout.group_size
  timings: dict = {}
  step_key = jax.random.fold_in(run.rng, run.step)
  parts, consumed = [], []
  for round_ in range(1 + (cfg.rollout.max_refill_rounds if cfg.rollout.dynamic_sampling else 0)):
    prompts = next(run.iterator)
    consumed.extend(int(i) for i in prompts["example_ids"])
    _fault("sample", run.step + 1)
    _fault("sigterm", run.step + 1)
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
  run.last_example_ids = consumed
  if _fault("nan", run.step + 1):
    batch = batch._replace(advantages=np.full_like(batch.advantages, np.nan))

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
      _fault("update", run.step + 1)
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
    logger.event(f"step {run.step + 1}: {skipped} of {len(metrics_list)} update(s) skipped (non-finite "
                 f"loss or gradient; parameters untouched); prompt example ids {groups.example_ids}")
  return metrics


def run(cfg, stop: preemption.StopRequest | None = None) -> dict:
  """Trains per `cfg` (see module doc); returns the last step's metrics. `stop`: a request whose
  SIGTERM handler the caller installed earlier (`simko_jax.main` does, before the multi-process
  start-up); None installs one for the duration of the run."""
  if stop is None:
    with preemption.on_sigterm() as own:
      return run(cfg, own)
  tr = build_run(cfg)
  _fault("sigterm", 0)
  return _train(cfg, tr, stop)


def _train(cfg, tr: Run, stop: preemption.StopRequest) -> dict:
  from simko_jax.train.logger import MetricsLogger
  from simko_jax.train import evaluation

  logger = MetricsLogger(cfg.out_dir, cfg.train.steps, tr.step)
  last, nonfinite_streak = {}, 0
  try:
    if tr.pipeline.num_dropped:
      logger.event(f"data: {tr.pipeline.num_dropped} prompts longer than config.data.max_prompt_len = "
                   f"{cfg.data.max_prompt_len} dropped; {tr.pipeline.num_examples} kept")
    if tr.step:
      logger.event(f"resumed from checkpoint step {tr.step} in {tr.checkpointer.directory}")
    elif cfg.eval.enabled and not stop.agreed():
      evaluation.evaluate_run(tr, "before", logger)
    # Agreed once per step, before it, and once more after the last one (a collective in multi-
    # process runs: every process evaluates this condition equally often).
    while not (stopped := stop.agreed()) and tr.step < cfg.train.steps:
      last = iteration(tr, logger)
      tr.step += 1
      logger.log(tr.step, last)
      logger.data_order(tr.step, tr.last_example_ids)
      nonfinite_streak = nonfinite_streak + 1 if last["updates_skipped"] else 0
      if nonfinite_streak >= cfg.train.max_nonfinite_in_a_row:
        raise NonFiniteError(
            f"{nonfinite_streak} consecutive steps (up to step {tr.step}) had non-finite losses or "
            f"gradients (limit config.train.max_nonfinite_in_a_row = "
            f"{cfg.train.max_nonfinite_in_a_row}); parameters were left untouched, the skipped "
            f"batches are listed in {storage.join(cfg.out_dir, 'events.log')}, and the last "
            "checkpoint is intact")
      save(tr)
      _fault("save", tr.step)
    tr.stop_requested = stopped
    if stopped:
      _announce_stop(tr, stop, logger)
    if tr.checkpointer.latest_step() != tr.step:
      save(tr, force=True)
    tr.checkpointer.wait()
    if not tr.stop_requested and cfg.eval.enabled and tr.step >= cfg.train.steps:
      evaluation.evaluate_run(tr, "after", logger)
  finally:
    logger.close()
    tr.close()
  if jax.process_index() == 0:
    storage.write_atomic(storage.join(cfg.out_dir, "final_metrics.json"),
                         json.dumps({"step": tr.step, **last}, indent=1))
  return last


def _announce_stop(tr: Run, stop: preemption.StopRequest, logger) -> None:
  """One line per process: process 0 to events.log and the console, the others to their stderr."""
  message = (f"SIGTERM: saving step {tr.step} before exiting (signal seen by process(es) "
             f"{stop.senders} of {jax.process_count()}; every process stops at this step)")
  if jax.process_index() == 0:
    logger.event(message)
  else:
    absl_logging.warning("process %d: %s", jax.process_index(), message)
