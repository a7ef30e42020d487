"""The RL loop: sample -> reward -> advantage -> old log-probs -> PPO epochs of jitted updates.

One direction of data flow per iteration (`iteration`): the sampler's output stays on device (global
arrays, also with several processes) through batch assembly, advantages, old/ref log-probs and the
updates (`train.batch`); the host reads back only the verifier's inputs (its rows' response ids), sends
the rewards and the chosen rows' indices back once, and reads the metrics once at the end. Phase wall
times (`PhaseTimes`: sample_s, reward_s, old_logprob_s, update_s) end with `block_until_ready`.

On-policy runs without dynamic sampling take `fused_iterations` instead (where `config.train.fused_step`
allows): the whole iteration is one compiled `rl_train_step` (train/fused.py) with the same prompts, keys
and mini-batch order, so checkpoints, data order and resume do not depend on the path; events.log says
which path a run takes and metrics.jsonl carries `fused_step` (1 or 0).

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

import dataclasses
import json
import os
import signal
import time

import jax
import numpy as np
from absl import logging as absl_logging

from simko_jax import storage
from simko_jax.train import batch as B
from simko_jax.train import preemption, rollout
from simko_jax.train.distributed import allgather, host_rows_to_global
from simko_jax.train.setup import Run, build_run, save
from simko_jax.train.step import batch_sharding, is_on_policy


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


@dataclasses.dataclass(frozen=True)
class PhaseTimes:
  """Wall seconds of one iteration's phases (each ends with its results ready on device or host)."""
  sample_s: float = 0.0       # sampler calls + the verifier's inputs to the host
  reward_s: float = 0.0       # ids -> text -> rewards (verifier pool)
  old_logprob_s: float = 0.0  # batch assembly on device + old/ref log-prob forwards
  update_s: float = 0.0       # mini-batch gathers + jitted train steps
  sampled_tokens: int = 0     # response tokens this host sampled


def iteration(run: Run, logger) -> dict:
  """One RL iteration at `run.step`; updates `run.params` / `run.opt_state` in place, returns metrics.

  Data flow (module `train.batch` doc): sampler output stays on device; the host reads back only the
  verifier's inputs, sends the rewards (and row indices) back once, and reads the metrics once.
  """
  cfg, g = run.cfg, run.cfg.rollout.group_size
  outs, scored, consumed, rollout_times = _rollouts(run)
  run.last_example_ids = consumed
  group_ids, padded = rollout.select_groups(scored, cfg.rollout.prompts_per_step, g,
                                            cfg.rollout.dynamic_sampling)
  chosen = scored.take_groups(group_ids, g)
  learning_rate = run.schedule(run.step)  # a device scalar, read with the other metrics

  start = time.perf_counter()
  batch = _assemble(run, outs, group_ids, chosen)
  batch = B.fill_logprobs(batch, run.logprob_fn, run.params, run.ref_params, old=not is_on_policy(cfg),
                          chunk=cfg.algo.micro_batch_size, mesh=run.mesh,
                          process_count=jax.process_count())
  summary = B.batch_summary(batch)
  old_logprob_s = _seconds_until_ready(start, (batch, summary))

  start = time.perf_counter()
  update_metrics = _updates(run, batch)
  times = dataclasses.replace(rollout_times, old_logprob_s=old_logprob_s,
                              update_s=_seconds_until_ready(start, (run.params, update_metrics)))

  # The one device -> host read of the iteration's metrics.
  update_metrics, summary, learning_rate = jax.device_get((update_metrics, summary, learning_rate))
  metrics = {k: float(np.mean([m[k] for m in update_metrics])) for k in update_metrics[0]}
  skipped = int(sum(int(m["update_skipped"]) for m in update_metrics))
  metrics["updates_skipped"] = skipped
  metrics.update(rollout.rollout_metrics(chosen, padded, g))
  metrics["advantage_abs_mean"] = float(summary["advantage_abs_mean"])
  trained_tokens = float((chosen.prompt_lengths + chosen.response_lengths).sum()) * cfg.algo.ppo_epochs
  metrics.update(
      sample_s=times.sample_s, reward_s=times.reward_s, old_logprob_s=times.old_logprob_s,
      update_s=times.update_s, sample_tokens_per_s=times.sampled_tokens / max(times.sample_s, 1e-9),
      train_tokens_per_s=trained_tokens / max(times.update_s, 1e-9),
      learning_rate=float(learning_rate), sampler_compilations=run.sampler.num_compilations)
  if skipped:
    logger.event(f"step {run.step + 1}: {skipped} of {len(update_metrics)} update(s) skipped (non-finite "
                 f"loss or gradient; parameters untouched); prompt example ids {chosen.example_ids}")
  return metrics


def fused_iterations(run: Run, logger) -> list[tuple[dict, list[int]]]:
  """`steps_per_call` RL iterations from `run.step` (fewer at the end of the run) through the single
  compiled `rl_train_step` (train/fused.py); updates `run.params` / `run.opt_state` in place. Prompts,
  keys (`fold_in(fold_in(rng, step), 0)`, as the phase path's one round) and the mini-batch order are
  the phase path's, so checkpoints and data order do not depend on the path. Returns each iteration's
  (metrics, example ids); one device -> host read of the metrics per call."""
  cfg = run.cfg
  count = min(run.fused.steps_per_call, cfg.train.steps - run.step)
  batches, keys = [], []
  for i in range(count):
    batches.append(next(run.iterator))
    _fault("sample", run.step + i + 1)
    _fault("sigterm", run.step + i + 1)
    keys.append(jax.random.fold_in(jax.random.fold_in(run.rng, run.step + i), 0))
  start = time.perf_counter()
  run.params, run.opt_state, metrics = run.fused(run.params, run.opt_state, run.ref_params, batches, keys,
                                                 run.step)
  rates = [run.schedule(run.step + i) for i in range(count)]
  metrics, rates = jax.device_get((metrics, rates))  # the one device -> host read of the call
  step_s = (time.perf_counter() - start) / count
  out = []
  for i, batch in enumerate(batches):
    m = {k: float(np.asarray(v).reshape(-1)[i] if count > 1 else v) for k, v in metrics.items()}
    m.update(updates_skipped=int(m.pop("update_skipped")), groups_padded=0, learning_rate=float(rates[i]),
             step_s=step_s, fused_step=1.0, sampler_compilations=run.sampler.num_compilations)
    m["sample_tokens_per_s"] = m["response_length"] * len(batch["example_ids"]) * cfg.rollout.group_size / step_s
    if m["updates_skipped"]:
      logger.event(f"step {run.step + i + 1}: 1 of 1 update(s) skipped (non-finite loss or gradient; "
                   f"parameters untouched); prompt example ids {list(batch['example_ids'])}")
    out.append((m, [int(e) for e in batch["example_ids"]]))
  return out


def _seconds_until_ready(start: float, tree) -> float:
  jax.block_until_ready(tree)
  return time.perf_counter() - start


def _rollouts(run: Run):
  """Sampler outputs (device) and this host's scored rows (host) of every sampler call of the step:
  one round, or under dynamic sampling up to `max_refill_rounds` more until the step is full (every
  process runs the same number of rounds). Returns (outputs, `Scored` of all calls, example ids,
  `PhaseTimes` of sampling and scoring)."""
  cfg, g = run.cfg, run.cfg.rollout.group_size
  step_key = jax.random.fold_in(run.rng, run.step)
  outs, parts, consumed = [], [], []
  sample_s = reward_s = 0.0
  for round_ in range(1 + (cfg.rollout.max_refill_rounds if cfg.rollout.dynamic_sampling else 0)):
    prompts = next(run.iterator)
    consumed.extend(int(i) for i in prompts["example_ids"])
    _fault("sample", run.step + 1)
    _fault("sigterm", run.step + 1)
    round_key = jax.random.fold_in(step_key, round_)
    chunks = rollout.split_prompts(prompts, cfg.rollout.sample_chunk_prompts)
    for i, chunk in enumerate(chunks):
      # One chunk keeps the round's own key, so unchunked runs sample exactly as before chunking.
      key = jax.random.fold_in(round_key, i) if len(chunks) > 1 else round_key
      out, part, *seconds = rollout.sample_and_score(
          run.sampler, run.params, chunk, key, cfg.rollout, run.tokenizer, run.pool.score,
          cfg.rewards.truncated_is_wrong)
      outs.append(out)
      parts.append(part)
      sample_s, reward_s = sample_s + seconds[0], reward_s + seconds[1]
    if not cfg.rollout.dynamic_sampling:
      break
    full = rollout.select_groups(rollout.Scored.concat(parts), cfg.rollout.prompts_per_step, g,
                                 True)[1] == 0
    if _all_processes(full):
      break
  scored = rollout.Scored.concat(parts)
  times = PhaseTimes(sample_s=sample_s, reward_s=reward_s,
                     sampled_tokens=int(scored.response_lengths.sum()))
  return outs, scored, consumed, times


def _all_processes(flag: bool) -> bool:
  """`flag` and-ed over processes (a collective in multi-process runs), so all take the same branch."""
  if jax.process_count() == 1:
    return flag
  return bool(np.all(allgather(np.asarray([flag], np.int32))))


def _assemble(run: Run, outs, group_ids, chosen) -> "B.Batch":
  """The step's `Batch` on device from the sampler outputs: the chosen rows (a device gather whose
  indices the host picked from its rewards) and the rewards, sent once."""
  cfg, g = run.cfg, run.cfg.rollout.group_size
  rows_sharding = batch_sharding(run.mesh, 1)
  rows_B = None  # one sampler call, every group kept: the output is the batch as it is
  if len(outs) > 1 or cfg.rollout.dynamic_sampling:
    sizes = [o.response_lengths.shape[0] // jax.process_count() for o in outs]
    rows = B.parts_rows(rollout.group_rows(group_ids, g), sizes, jax.process_index(), jax.process_count())
    rows_B = host_rows_to_global(rows, rows_sharding)
  rewards_B = host_rows_to_global(chosen.rewards, rows_sharding)
  batch = B.assemble_batch(tuple(outs), rows_B, rewards_B, group_size=g, advantage=cfg.algo.advantage,
                           adv_eps=cfg.algo.adv_eps, overlong_mask=cfg.algo.overlong_mask,
                           sharding=rows_sharding)
  if _fault("nan", run.step + 1):
    batch = batch._replace(advantages=host_rows_to_global(np.full_like(chosen.rewards, np.nan),
                                                          rows_sharding))
  return batch


def _updates(run: Run, batch) -> list[dict]:
  """`ppo_epochs` passes of jitted updates over mini-batches of `mini_batch_prompts` groups, taken on
  device with the permutation `default_rng([seed, step, epoch])` of each host's rows (the same rows
  a host-side split would give). Returns the updates' metrics (device arrays)."""
  cfg, g = run.cfg, run.cfg.rollout.group_size
  rows_per_host = batch.advantages.shape[0] // jax.process_count()
  mini, micro = cfg.algo.mini_batch_prompts * g, cfg.algo.micro_batch_size
  micro_sharding = batch_sharding(run.mesh, 2)
  metrics = []
  for epoch in range(cfg.algo.ppo_epochs):
    order = np.random.default_rng([cfg.seed, run.step, epoch]).permutation(rows_per_host)
    for lo in range(0, rows_per_host, mini):
      rows_MxMB = B.host_major_rows(order[lo:lo + mini].reshape(mini // micro, micro), rows_per_host,
                                    jax.process_count())
      mb = B.take_rows(batch, B.put_replicated(rows_MxMB, run.mesh), sharding=micro_sharding)
      with jax.set_mesh(run.mesh):  # the model's activation sharding constraints apply when traced
        run.params, run.opt_state, m = run.train_step(run.params, run.opt_state, mb)
      metrics.append(m)
      _fault("update", run.step + 1)
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
    logger.event(tr.path_note)
    while not (stopped := stop.agreed()) and tr.step < cfg.train.steps:
      if tr.fused is not None:
        steps = fused_iterations(tr, logger)
      else:
        steps = [(iteration(tr, logger), None)]
        steps[0][0]["fused_step"] = 0.0
      for last, example_ids in steps:
        tr.step += 1
        tr.last_example_ids = example_ids if example_ids is not None else tr.last_example_ids
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
