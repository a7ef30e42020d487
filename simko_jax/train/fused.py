"""One compiled RL iteration: sample -> reward -> advantages -> update in a single `jax.jit` (issue 25).

    params, opt_state, metrics = rl_train_step(params, opt_state, prompts, key)

is the phase-by-phase iteration of `train.loop` (on-policy runs: one PPO epoch, one mini-batch, no
dynamic sampling) as one XLA program with explicit shardings and donated params / optimizer state:

    out = sample_program(graphdef, params, prompts, ...)               # sampling/sampler.py
    rewards = reward(out.response_tokens, out.response_mask, truth)    # rewards/on_device.py (or callback)
    batch = assemble_batch((out,), None, rewards, ...)                 # train/batch.py: masks, advantages
    params, opt_state, m = train_step_fn(...)(params, opt_state, take_rows(batch, rows_MxJ))

The same device functions as the phase path (one implementation of each piece of math), fed the same
key (`fold_in(fold_in(rng, step), 0)`) and the same mini-batch row order (`rows_MxJ`, the permutation
`default_rng([seed, step, 0])` the loop uses, computed on the host: [M, J] int32): the same tokens,
rewards, advantages, parameters and metrics (tests/train/test_fused.py). Host <-> device per call:
prompts, truth arrays, row order and key in; one `device_get` of the metrics out.

`steps_per_call` N > 1 runs N iterations in one call (`lax.scan` over a prefetched buffer of N prompt
batches [N, P, Tp] and their keys); the trainer checkpoints and logs between calls. Metrics leaves are
then [N].
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from simko_jax.parallel import logical_to_spec, use_rules
from simko_jax.rewards.on_device import repeat_rows
from simko_jax.sampling.sampler import FINISH_LENGTH, sample_program
from simko_jax.train import batch as B
from simko_jax.train.distributed import host_rows_to_global
from simko_jax.train.step import batch_sharding, response_logprobs, train_step_fn


class Prompts(NamedTuple):
  """One iteration's inputs (global arrays; leading [N] when several iterations run per call).

  tokens_PxTp, mask_PxTp: int32 prompts left-padded to the sampler's bucket, rows sharded over the mesh.
  truth: the reward's prepared ground truths (tree of [P, ...] arrays, rows sharded like the prompts).
  rows_MxJ: int32 [M, J] mini-batch row order (replicated), `train.batch.host_major_rows` layout.
  """
  tokens_PxTp: jax.Array
  mask_PxTp: jax.Array
  truth: Any
  rows_MxJ: jax.Array


@dataclasses.dataclass(frozen=True)
class FusedSpec:
  """Static pieces of the program (hashable where jit needs them; `reward` is closed over)."""
  group_size: int
  advantage: str
  adv_eps: float
  overlong_mask: bool
  truncated_is_wrong: bool
  kl: bool
  logprob_chunk: int  # rows per reference log-prob forward (global)


def _rollout(graphdef, loss_cfg, spec: FusedSpec, reward, sampler_static, mesh):
  """Traced: (params, ref_params, prompts, knobs, key) -> (the iteration's `Batch` [B, ...], rollout
  metrics incl. the reward's timeout / truncation counts, rewards float32 [B]): sampling, scoring,
  advantages, masks (+ reference log-probs when the KL term is on)."""
  rows = batch_sharding(mesh, 1)
  g = spec.group_size

  def rollout(params, ref_params, prompts: Prompts, knobs, key):
    out = sample_program(graphdef, params, prompts.tokens_PxTp, prompts.mask_PxTp, key, *knobs,
                         **sampler_static)
    scored = reward(out.response_tokens, out.response_mask, repeat_rows(prompts.truth, g))
    truncated_B = out.finish_reason == FINISH_LENGTH
    rewards_B = scored["rewards"].astype(jnp.float32)
    if spec.truncated_is_wrong:
      rewards_B = jnp.where(truncated_B, 0.0, rewards_B).astype(jnp.float32)
    batch = B.assemble_batch((out,), None, rewards_B, group_size=g, advantage=spec.advantage,
                             adv_eps=spec.adv_eps, overlong_mask=spec.overlong_mask, sharding=rows)
    if spec.kl:
      batch = batch._replace(ref_logprobs=_ref_logprobs(graphdef, ref_params, batch, loss_cfg,
                                                        spec.logprob_chunk, rows))
    metrics = dict(_rollout_metrics(rewards_B, truncated_B, out.response_lengths, g),
                   advantage_abs_mean=jnp.mean(jnp.abs(batch.advantages)),
                   reward_timeouts=scored["timeouts"], reward_truncated=scored["truncated"])
    return batch, metrics, jax.lax.with_sharding_constraint(rewards_B, rows)

  return rollout


def _iteration(graphdef, tx_step, loss_cfg, spec: FusedSpec, reward, sampler_static, mesh):
  """Traced body of one iteration: (params, opt_state, ref_params, prompts, knobs, key) -> (params,
  opt_state, metrics): the rollout, then one optimizer step over the micro-batches `prompts.rows_MxJ`."""
  rollout = _rollout(graphdef, loss_cfg, spec, reward, sampler_static, mesh)

  def body(params, opt_state, ref_params, prompts: Prompts, knobs, key):
    batch, metrics, _ = rollout(params, ref_params, prompts, knobs, key)
    mb = B.take_rows(batch, prompts.rows_MxJ, sharding=batch_sharding(mesh, 2))
    params, opt_state, update = tx_step(params, opt_state, mb)
    return params, opt_state, dict(update, **metrics)

  return body


def _ref_logprobs(graphdef, ref_params, batch, loss_cfg, chunk: int, rows_sharding):
  """Reference log-probs [B, R] in forwards of `chunk` rows (the phase path's chunk size)."""
  response_len = batch.loss_mask.shape[-1]
  inputs = jax.tree.map(lambda x: x.reshape(-1, chunk, *x.shape[1:]),
                        (batch.tokens, batch.attention_mask, batch.positions))
  logp = jax.lax.map(lambda x: response_logprobs(graphdef, ref_params, *x, response_len, loss_cfg), inputs)
  return jax.lax.with_sharding_constraint(logp.reshape(batch.loss_mask.shape), rows_sharding)


def _rollout_metrics(rewards_B, truncated_B, lengths_B, g: int) -> dict:
  """`rollout.rollout_metrics` on device, over the whole (global) batch."""
  rewards_PxG = rewards_B.reshape(-1, g)
  best, worst = rewards_PxG.max(-1), rewards_PxG.min(-1)
  f32 = lambda x: jnp.mean(x.astype(jnp.float32))
  return {"reward_mean": jnp.mean(rewards_PxG), "accuracy": f32(rewards_PxG > 0.5),
          "pass_at_group": f32(best > 0.5), "response_length": f32(lengths_B),
          "truncated_fraction": f32(truncated_B), "groups_all_equal": f32(best == worst)}


class FusedStep:
  """`rl_train_step` for one run: the jitted program(s) plus the host side that prepares their inputs.

  sampler: the run's `Sampler` (its pad/stop ids, bucket sizes, mesh and rules). reward: a
  `DeviceReward` or `HostRewards` (rewards/on_device.py). steps_per_call: iterations per call (N).
  """

  def __init__(self, cfg, graphdef, tx, loss_cfg, *, sampler, reward, mesh, param_shardings, opt_shardings,
               steps_per_call: int = 1):
    self.cfg, self.sampler, self.reward, self.mesh = cfg, sampler, reward, mesh
    self.steps_per_call = int(steps_per_call)
    r = cfg.rollout
    self.sampling = dict(n=r.group_size, max_new_tokens=r.max_new_tokens, temperature=r.temperature,
                         top_p=r.top_p, top_k=r.top_k)
    spec = FusedSpec(group_size=r.group_size, advantage=cfg.algo.advantage, adv_eps=cfg.algo.adv_eps,
                     overlong_mask=cfg.algo.overlong_mask, truncated_is_wrong=cfg.rewards.truncated_is_wrong,
                     kl=cfg.algo.kl_coef > 0, logprob_chunk=cfg.algo.micro_batch_size * jax.process_count())
    self._args = (graphdef, train_step_fn(graphdef, tx, loss_cfg), loss_cfg, spec)
    self._shardings = (param_shardings, opt_shardings)
    self._programs = {}

  def _program(self, static: dict, steps: int, with_ref: bool):
    """The jitted program for one static sampler signature and `steps` iterations per call."""
    key = (tuple(sorted(static.items())), steps, with_ref)
    if key not in self._programs:
      body = _iteration(*self._args, self.reward, static, self.mesh)
      if steps > 1:
        def program(params, opt_state, ref_params, prompts, knobs, keys):
          def scan_body(carry, xs):
            params, opt_state, metrics = body(*carry, ref_params, xs[0], knobs, xs[1])
            return (params, opt_state), metrics
          (params, opt_state), metrics = jax.lax.scan(scan_body, (params, opt_state), (prompts, keys))
          return params, opt_state, metrics
      else:
        program = body
      params_s, opt_s = self._shardings
      replicated = NamedSharding(self.mesh, PartitionSpec())
      # Prompts: as `place` put them (rows over the batch axes where they divide, like the sampler's).
      self._programs[key] = jax.jit(
          program, in_shardings=(params_s, opt_s, params_s if with_ref else None, None, replicated,
                                 replicated),
          out_shardings=(params_s, opt_s, replicated), donate_argnums=(0, 1))
    return self._programs[key]

  def host_inputs(self, prompt_batch: dict, step: int) -> tuple[Prompts, tuple, dict]:
    """This host's prompt batch (the pipeline's dict) -> (`Prompts` of this host's numpy rows, knobs,
    static sampler args). The row order is the phase path's: `default_rng([seed, step, 0])`."""
    cfg = self.cfg
    (tokens, mask), knobs, static = self.sampler.program_inputs(
        prompt_batch["prompt_tokens"], prompt_batch["prompt_mask"], **self.sampling)
    truth = self.reward.prepare(list(prompt_batch["ground_truths"]), list(prompt_batch["data_sources"]))
    rows_per_host = len(prompt_batch["example_ids"]) * cfg.rollout.group_size
    micro = cfg.algo.micro_batch_size
    order = np.random.default_rng([cfg.seed, step, 0]).permutation(rows_per_host)
    rows_MxJ = B.host_major_rows(order.reshape(rows_per_host // micro, micro), rows_per_host,
                                 jax.process_count())
    static.update(mesh=self.sampler.mesh, rules=self.sampler.rules)
    prompts = Prompts(tokens, mask, jax.tree.map(np.asarray, truth), rows_MxJ)
    return prompts, tuple(np.asarray(k) for k in knobs), static

  def place(self, host_prompts: list[Prompts]) -> Prompts:
    """N iterations' host `Prompts` -> global arrays, rows sharded like the sampler's prompts; N > 1:
    stacked into the prefetched buffer [N, P, ...] the scan reads."""
    lead = 0 if len(host_prompts) == 1 else 1
    stack = (lambda *xs: xs[0]) if lead == 0 else (lambda *xs: np.stack(xs))
    host = jax.tree.map(stack, *host_prompts)
    def rows(x):
      shape = list(x.shape)
      shape[lead] *= jax.process_count()
      axes = (None,) * lead + ("batch",) + (None,) * (x.ndim - lead - 1)
      spec = logical_to_spec(axes, self.mesh, self.sampler.rules, shape)
      return host_rows_to_global(x, NamedSharding(self.mesh, spec))
    return Prompts(rows(host.tokens_PxTp), rows(host.mask_PxTp), jax.tree.map(rows, host.truth),
                   B.put_replicated(host.rows_MxJ, self.mesh))

  def __call__(self, params, opt_state, ref_params, prompt_batches: list[dict], keys, first_step: int):
    """Runs len(prompt_batches) iterations (1, or N in a scan) from step `first_step`; returns (params,
    opt_state, metrics as device arrays, [N] leaves when N > 1). `keys`: one sampling key per step."""
    parts = [self.host_inputs(p, first_step + i) for i, p in enumerate(prompt_batches)]
    prompts = self.place([p[0] for p in parts])
    knobs = tuple(B.put_replicated(k, self.mesh) for k in parts[0][1])
    keys = keys[0] if len(parts) == 1 else jnp.stack(keys)
    with self._context():
      program = self._program(parts[0][2], len(parts), ref_params is not None)
      return program(params, opt_state, ref_params, prompts, knobs, keys)

  def rollout(self, params, ref_params, prompt_batch: dict, key, step: int) -> dict:
    """The fused program's rollout alone (no update; tests and benchmarks): device arrays tokens
    [B, T], rewards [B], advantages [B], loss_mask [B, R]."""
    prompts, knobs, static = self.host_inputs(prompt_batch, step)
    prompts = self.place([prompts])
    knobs = tuple(B.put_replicated(k, self.mesh) for k in knobs)
    graphdef, _, loss_cfg, spec = self._args
    fn = jax.jit(_rollout(graphdef, loss_cfg, spec, self.reward, static, self.mesh))
    with self._context():
      batch, _, rewards = fn(params, ref_params, prompts, knobs, key)
    return {"tokens": batch.tokens, "rewards": rewards, "advantages": batch.advantages,
            "loss_mask": batch.loss_mask}

  def _context(self):
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(self.mesh))
    if self.sampler.rules is not None:
      stack.enter_context(use_rules(self.sampler.rules))
    return stack

