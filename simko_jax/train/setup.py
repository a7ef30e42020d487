"""Builds everything a run needs, once: mesh, policy, tokenizer, data, sampler, verifier pool,
the jitted train step and log-prob forward, the optimizer, and the checkpointer (restoring if possible).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

from simko_jax import storage
from simko_jax.config import ConfigError, fused_step_blocker, validate
from simko_jax.data.pipeline import PipelineConfig, PromptPipeline
from simko_jax.data.prompts import format_from_train_config
from simko_jax.parallel import make_mesh, model_shardings, opt_state_shardings
from simko_jax.rewards.host_callback import HostRewards
from simko_jax.rewards.on_device import batch_reward_for, task_data_source
from simko_jax.rewards.pool import VerifierPool
from simko_jax.sampling.sampler import Sampler
from simko_jax.train import tasks
from simko_jax.train.checkpoint import CheckpointError, RunCheckpointer
from simko_jax.train.fused import FusedStep
from simko_jax.train.distributed import gather_json, host_rows_to_global
from simko_jax.train.model_source import load_model_and_tokenizer
from simko_jax.train.policy_source import write_run_tokenizer
from simko_jax.train.step import LossHParams, batch_sharding, jit_logprobs, jit_train_step, make_optimizer


@dataclasses.dataclass
class Run:
  """The state of a training run (arrays live on the mesh; everything else on the host)."""
  cfg: Any
  mesh: Any
  graphdef: Any
  params: Any
  opt_state: Any
  ref_params: Any
  rng: Any
  step: int
  tokenizer: Any
  tokenizer_source: str
  model_config: dict
  sampler: Sampler
  pipeline: PromptPipeline
  iterator: Any
  pool: VerifierPool
  train_step: Any
  logprob_fn: Any
  schedule: Any
  checkpointer: RunCheckpointer
  eval_examples: list
  fused: FusedStep | None = None  # the single compiled rl_train_step, when the run takes it
  path_note: str = ""             # which iteration path the run takes, and why (for events.log)
  stop_requested: bool = False
  last_example_ids: list = dataclasses.field(default_factory=list)  # prompts the last step consumed

  def put_rows_micro(self, batch):
    """A micro-batched host `Batch` ([M, mb, ...] leaves) -> global arrays, mb over the data axes
    (multi-process: global mb = process_count x the local mb). The loop builds its batches on device
    (`train.batch`); this is for batches made on the host (tests, tools)."""
    sharding = batch_sharding(self.mesh, 2)
    return jax.tree.map(lambda x: host_rows_to_global(x, sharding), batch)

  def close(self):
    self.pool.close()
    self.checkpointer.close()


def build_mesh(train_cfg):
  """The (data, fsdp, tensor) mesh over all processes' devices (process-major order, so each host
  holds a contiguous block of batch rows as long as mesh_tensor divides its local device count)."""
  devices = jax.device_count()
  fixed = train_cfg.mesh_fsdp * train_cfg.mesh_tensor
  data = devices // fixed if train_cfg.mesh_data == -1 else train_cfg.mesh_data
  if jax.process_count() > 1 and jax.local_device_count() % train_cfg.mesh_tensor:
    raise ConfigError(
        f"config.train.mesh_tensor = {train_cfg.mesh_tensor} is invalid: allowed a divisor of the "
        f"devices per process ({jax.local_device_count()}) so tensor-parallel groups stay on one host.")
  return make_mesh(data, train_cfg.mesh_fsdp, train_cfg.mesh_tensor)


def _check_divisibility(cfg, mesh):
  # Batch sizes are per process: each host's micro-batch is spread over its share of the row axes.
  rows = mesh.shape["data"] * mesh.shape["fsdp"]
  local_rows = max(1, rows // jax.process_count())
  if cfg.algo.micro_batch_size % local_rows:
    raise ConfigError(
        f"config.algo.micro_batch_size = {cfg.algo.micro_batch_size} is invalid: allowed a multiple "
        f"of the mesh's data x fsdp size per process ({local_rows}) so every device gets whole "
        "responses.")


def build_run(cfg) -> Run:
  """Validates `cfg` against the devices, builds the run and restores its latest checkpoint if any."""
  validate(cfg, num_devices=jax.device_count())
  mesh = build_mesh(cfg.train)
  _check_divisibility(cfg, mesh)
  examples = tasks.train_examples(cfg.data, cfg.seed)  # bad data fails before the model is loaded
  # A local dir or a gs:// URL; unreachable / missing / read-only buckets fail here, before the model.
  try:
    storage.check_writable(cfg.out_dir)
  except storage.StorageError as err:
    raise CheckpointError(str(err)) from err
  checkpointer = RunCheckpointer(str(storage.join(cfg.out_dir, "checkpoints")), keep=cfg.checkpoint.keep,
                                 every=cfg.checkpoint.every, async_save=cfg.checkpoint.async_save)
  with jax.set_mesh(mesh):
    model, tokenizer, tokenizer_source = load_model_and_tokenizer(cfg.model, cfg.seed, mesh)
  validate(cfg, vocab_size=model.cfg.vocab_size, num_devices=jax.device_count())
  # Checkpoints carry their tokenizer, so evaluate/export never need the original model directory.
  write_run_tokenizer(checkpointer.directory, tokenizer, model_max_length=model.cfg.max_position_embeddings)
  graphdef, params = nnx.split(model)
  param_shardings = model_shardings(model, mesh)

  updates_per_step = cfg.algo.ppo_epochs * (cfg.rollout.prompts_per_step // cfg.algo.mini_batch_prompts)
  tx, schedule = make_optimizer(cfg.optim, cfg.train.steps * updates_per_step)
  # Adam's mu / nu sharded like the params (a bare jit(tx.init) replicates them on every device).
  opt_shardings = opt_state_shardings(tx, params, param_shardings, mesh)
  opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
  checkpointer.check_free_space(sum(getattr(x, "nbytes", 0)
                                    for x in jax.tree.leaves((params, opt_state))))
  loss_cfg = LossHParams.from_config(cfg)
  train_step = jit_train_step(graphdef, tx, loss_cfg, param_shardings, opt_shardings, mesh)
  logprob_fn = jit_logprobs(graphdef, loss_cfg, param_shardings, mesh)
  ref_params = jax.tree.map(lambda x: x.copy(), params) if cfg.algo.kl_coef > 0 else None

  pipeline = prompt_pipeline(cfg, examples, tokenizer)
  # EOS plus chat turn ends (Gemma's <end_of_turn>); the character tokenizer has EOS only.
  stop_ids = getattr(tokenizer, "stop_ids", (tokenizer.eos_id,))
  sampler = Sampler(graphdef, pad_id=tokenizer.pad_id, stop_ids=stop_ids,
                    mesh=mesh if mesh.size > 1 else None, prompt_bucket=cfg.data.prompt_bucket)
  pool = VerifierPool(cfg.rewards.num_workers, cfg.rewards.timeout_s, default_source=None,
                      math_extraction=cfg.rewards.math_extraction)
  fused, path_note = fused_step(cfg, graphdef, tx, loss_cfg, sampler, pool, tokenizer, model.cfg.vocab_size,
                                mesh, param_shardings, opt_shardings)
  eval_examples = tasks.held_out_examples(cfg.data, cfg.seed, cfg.eval.num_problems)
  run = Run(cfg=cfg, mesh=mesh, graphdef=graphdef, params=params, opt_state=opt_state,
            ref_params=ref_params, rng=jax.random.key(cfg.seed), step=0, tokenizer=tokenizer,
            tokenizer_source=tokenizer_source, model_config=model.cfg.to_hf_config(),
            sampler=sampler, pipeline=pipeline, iterator=pipeline.iterator(), pool=pool,
            train_step=train_step, logprob_fn=logprob_fn, schedule=schedule,
            checkpointer=checkpointer, eval_examples=eval_examples, fused=fused, path_note=path_note)
  maybe_restore(run)
  return run


def fused_step(cfg, graphdef, tx, loss_cfg, sampler, pool, tokenizer, vocab_size, mesh, param_shardings,
               opt_shardings) -> tuple[FusedStep | None, str]:
  """The run's `FusedStep` when `config.train.fused_step` and the run allow it (else None), and a line
  saying which path the run takes and why."""
  blocker = fused_step_blocker(cfg)
  if cfg.train.fused_step == "off" or blocker:
    return None, f"iteration: phase-by-phase ({blocker or 'config.train.fused_step = off'})"
  if cfg.data.task == "files":
    reward = HostRewards(pool, tokenizer)
  else:
    reward = batch_reward_for(task_data_source(cfg.data.task, cfg.data.answer_format), tokenizer, pool=pool,
                              vocab_size=vocab_size, math_extraction=cfg.rewards.math_extraction)
  where = "on device" if reward.on_device else "host verifier pool through a callback"
  if not reward.on_device and jax.process_count() > 1 and cfg.train.fused_step == "auto":
    return None, "iteration: phase-by-phase (host rewards with several processes)"
  if cfg.train.steps_per_call > 1 and not reward.on_device:
    raise ConfigError(f"config.train.steps_per_call = {cfg.train.steps_per_call} is invalid: allowed 1 for "
                      f"rewards scored on the host (task {cfg.data.task!r}); several iterations per call need "
                      "an on-device verifier (tasks arith, countdown)")
  fused = FusedStep(cfg, graphdef, tx, loss_cfg, sampler=sampler, reward=reward, mesh=mesh,
                    param_shardings=param_shardings, opt_shardings=opt_shardings,
                    steps_per_call=cfg.train.steps_per_call)
  return fused, (f"iteration: fused rl_train_step (one compiled program; rewards {where}; "
                 f"{cfg.train.steps_per_call} iteration(s) per call)")


def prompt_pipeline(cfg, examples, tokenizer) -> PromptPipeline:
  """This host's training prompt batches: `cfg.data` / `cfg.rollout` sizes, prompts built by
  `data.prompts.prompt_ids` from `data.system_prompt`, `data.prompt_suffix`, `data.prompt_template`."""
  return PromptPipeline(examples, tokenizer, PipelineConfig(
      num_prompts=cfg.rollout.prompts_per_step, max_prompt_len=cfg.data.max_prompt_len,
      bucket_size=cfg.data.prompt_bucket, pad_id=tokenizer.pad_id, seed=cfg.seed,
      num_epochs=cfg.data.num_epochs, shard_index=jax.process_index(),
      shard_count=jax.process_count(),
      overlong="drop" if cfg.data.overlong_prompts == "drop" else "error",
      prompt_format=format_from_train_config(cfg)))


def maybe_restore(run: Run) -> bool:
  """Restores the newest readable checkpoint into `run` (exact continuation); False if none."""
  if run.checkpointer.latest_step() is None:
    return False
  abstract = lambda tree: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
  rng_data = jax.random.key_data(run.rng)
  step, pure_params, opt_state, rng, data_state, meta = run.checkpointer.restore(
      abstract(nnx.to_pure_dict(run.params)), abstract(run.opt_state),
      jax.ShapeDtypeStruct(rng_data.shape, rng_data.dtype), model_config=run.model_config)
  del meta
  nnx.replace_by_pure_dict(run.params, pure_params)
  run.opt_state, run.rng, run.step = opt_state, rng, step
  if "per_process" in data_state:  # multi-process runs save every host's iterator position
    states = data_state["per_process"]
    if len(states) != jax.process_count():
      raise ConfigError(f"the checkpoint in {run.checkpointer.directory} was written by {len(states)} "
                        f"processes; this run has {jax.process_count()}")
    data_state = states[jax.process_index()]
  try:
    run.iterator.set_state(data_state)
  except ValueError as err:
    raise ConfigError(f"the checkpoint step {step} in {run.checkpointer.directory} was written for "
                      f"other data or data settings ({err}): resume with the config.data and "
                      "config.rollout.prompts_per_step that wrote it, or use a new config.out_dir") from err
  return True


def save(run: Run, *, force: bool = False) -> bool:
  meta = {"config": run.cfg.to_dict(), "model_config": run.model_config,
          "tokenizer": run.tokenizer_source}
  return run.checkpointer.save(run.step, nnx.to_pure_dict(run.params), run.opt_state, run.rng,
                               _data_state(run), meta, force=force)


def _data_state(run: Run) -> dict:
  """The prompt iterator's state; multi-process: every host's, gathered (only process 0 writes JSON)."""
  state = run.iterator.get_state()
  return {"per_process": gather_json(state)} if jax.process_count() > 1 else state
