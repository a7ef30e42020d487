"""Runs the same RL iterations through the phase-by-phase path and the fused `rl_train_step` and writes
the largest differences as JSON (used by tests/train/test_fused.py on 1 device, on the (2,2,2) mesh of
8 fake CPU devices, and as each of two JAX processes).

  python -m tests.train.fused_equality OUT.json WORK_DIR [--fsdp 2 --tensor 2] [--preset NAME]
      [--reward task|parity_device|parity_host]

The random model earns no arith reward, so rewards can also be the parity of the decoded response's
length (`--reward parity_*`: non-zero rewards and GRPO advantages): the host pool's `score` on the phase
path; on the fused path either the same rule on device (over `rewards.token_text.response_chars`) or
the pool's `score` itself through the host callback (`rewards.host_callback.HostRewards`).

Several processes (tests/multiprocess.py) each write OUT.json.<process index>; their rollout metrics on the
phase path are each host's own rows (the fused ones are global), so only single-process runs compare those.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

jax.config.update("jax_default_matmul_precision", "highest")

from configs import default, tiny_random  # noqa: E402
from simko_jax.train import distributed, loop  # noqa: E402
from simko_jax.train.distributed import global_rows_to_host  # noqa: E402
from simko_jax.train.setup import build_run  # noqa: E402


class _Logger:
  def event(self, message):
    print(message, flush=True)


def config(out_dir, *, base="tiny_random", fsdp=1, tensor=1, advantage="signed", steps=2, steps_per_call=1,
           kl=""):
  """`base` (configs/tiny_random.py, or configs/default.py: SmolLM2-135M) made short and on-policy: one
  mini-batch of 2 prompts x 4 responses of <= 16 tokens in 2 micro-batches."""
  cfg = (default if base == "default" else tiny_random).get_config()
  cfg.out_dir, cfg.eval.enabled = out_dir, False
  cfg.algo.mini_batch_prompts = cfg.rollout.prompts_per_step = 2
  cfg.rollout.group_size, cfg.rollout.max_new_tokens = 4, 16
  cfg.algo.micro_batch_size = 4
  cfg.algo.advantage = advantage
  cfg.algo.kl_coef = float(kl or cfg.algo.kl_coef)  # > 0: reference log-probs inside the program
  cfg.rewards.num_workers = 1
  cfg.train.mesh_fsdp, cfg.train.mesh_tensor, cfg.train.steps = fsdp, tensor, steps
  cfg.train.steps_per_call = cfg.checkpoint.every = steps_per_call
  return cfg


def phase_rollout(run):
  """(tokens, rewards, advantages) of the phase path's next iteration, iterator rewound afterwards."""
  state = run.iterator.get_state()
  outs, scored, _, _ = loop._rollouts(run)
  batch = loop._assemble(run, outs, np.arange(run.cfg.rollout.prompts_per_step), scored)
  run.iterator.set_state(state)
  return global_rows_to_host((batch.tokens, batch.advantages)) + (scored.rewards,)


def fused_rollout(run):
  """The fused program's own tokens / rewards / advantages for the next iteration (no update kept)."""
  state = run.iterator.get_state()
  batch = next(run.iterator)
  key = jax.random.fold_in(jax.random.fold_in(run.rng, run.step), 0)
  rollout = run.fused.rollout(run.params, run.ref_params, batch, key, run.step)
  run.iterator.set_state(state)
  return global_rows_to_host((rollout["tokens"], rollout["advantages"], rollout["rewards"]))


def flat(params):
  """This host's shards of every parameter, flattened (equal shardings on both paths)."""
  return np.concatenate([np.ravel(np.asarray(s.data)) for x in jax.tree.leaves(params)
                         for s in x.addressable_shards])


ROLLOUT_METRICS = ("reward_mean", "accuracy", "pass_at_group", "response_length", "truncated_fraction",
                   "groups_all_equal")


def metric_diffs(m_phase: dict, m_fused: dict) -> dict:
  """|phase - fused| of every metric both log (timings aside); rollout metrics only on one process (the
  phase path's are this host's rows)."""
  skip = ROLLOUT_METRICS if jax.process_count() > 1 else ()
  return {k: abs(float(m_phase[k]) - float(m_fused[k])) for k in m_fused
          if k in m_phase and k not in skip and not k.endswith(("_s", "_per_s", "compilations"))}


def parity_host(items):
  return [float(len(text) % 2) for text, _, _ in items]


class ParityOnDevice:
  """`parity_host` over token ids, on device (the run's `DeviceReward` token table)."""
  on_device = True

  def __init__(self, device_reward):
    self.table, self.prepare = device_reward.table, device_reward.prepare

  def __call__(self, tokens_BxR, mask_BxR, truth):
    import jax.numpy as jnp
    from simko_jax.rewards.token_text import response_chars
    _, length_B, _ = response_chars(self.table, tokens_BxR, mask_BxR, tokens_BxR.shape[1] * self.table.max_token_bytes)
    return {"rewards": (length_B % 2).astype(jnp.float32), "timeouts": jnp.int32(0), "truncated": jnp.int32(0)}


def use_reward(phase, fused, reward: str):
  if reward == "task":
    return
  from simko_jax.rewards.host_callback import HostRewards
  phase.pool.score = fused.pool.score = parity_host
  fused.fused.reward = (ParityOnDevice(fused.fused.reward) if reward == "parity_device"
                        else HostRewards(fused.pool, fused.tokenizer))


def compare(out_path, work_dir, reward="task", **kw):
  phase_cfg = config(os.path.join(work_dir, "phase"), **kw)
  phase_cfg.train.fused_step, phase_cfg.train.steps_per_call = "off", 1
  phase = build_run(phase_cfg)
  fused = build_run(config(os.path.join(work_dir, "fused"), **kw))
  assert phase.fused is None and fused.fused is not None, (phase.path_note, fused.path_note)
  use_reward(phase, fused, reward)
  result = {"steps": []}
  if fused.fused.steps_per_call > 1:  # N phase iterations against one scanned call of N
    phase_metrics = []
    for _ in range(phase.cfg.train.steps):
      phase_metrics.append(loop.iteration(phase, _Logger()))
      phase.step += 1
    for m_phase, (m_fused, _) in zip(phase_metrics, loop.fused_iterations(fused, _Logger())):
      result["steps"].append({"metrics": metric_diffs(m_phase, m_fused)})
    result["steps"][-1]["params"] = float(np.max(np.abs(flat(phase.params) - flat(fused.params))))
  for _ in range(phase.cfg.train.steps if fused.fused.steps_per_call == 1 else 0):
    a = phase_rollout(phase)
    print("phase rollout done", flush=True)
    b = fused_rollout(fused)
    print("fused rollout done", flush=True)
    step = {name: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
            for name, x, y in zip(("tokens", "advantages", "rewards"), a, b)}
    step["tokens_equal"] = bool(np.array_equal(a[0], b[0]))
    m_phase = loop.iteration(phase, _Logger())
    print("phase iteration done", flush=True)
    ((m_fused, ids),) = loop.fused_iterations(fused, _Logger())
    print("fused iteration done", flush=True)
    phase.step += 1
    fused.step += 1
    step["example_ids_equal"] = ids == phase.last_example_ids
    step["params"] = float(np.max(np.abs(flat(phase.params) - flat(fused.params))))
    step["metrics"] = metric_diffs(m_phase, m_fused)
    step["reward_mean"] = m_fused["reward_mean"]
    step["grad_norm"] = float(m_fused["grad_norm"])
    result["steps"].append(step)
  for run in (phase, fused):
    run.close()
  with open(out_path, "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  args = sys.argv[3:]
  kw = {k.lstrip("-"): (int(v) if v.isdigit() else v) for k, v in zip(args[::2], args[1::2])}
  out = sys.argv[1]
  if distributed.maybe_initialize() and jax.process_count() > 1:
    out = f"{out}.{jax.process_index()}"
  compare(out, sys.argv[2], **kw)
