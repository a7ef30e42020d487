"""Peer: Google Tunix 0.1.7's GRPO (`tunix.rl.grpo.grpo_learner.GRPOLearner` on an `RLCluster` with the
"vanilla" rollout engine), random weights in its Llama3 model, on JAX CPU. Run by
`benchmarks/rl_iteration.py`:

  /tmp/venv-peers/bin/python benchmarks/peers/tunix_grpo.py --shape mini --iterations 3

Workload per iteration (same as ours): 4 prompts of 64 random token ids (no padding) x 8 rollouts,
exactly 128 new tokens (eos id -1 is never sampled), temperature 1 / top_p 1, beta 0 (no reference
model, no KL), num_iterations 1 (on-policy: Tunix then skips the old-log-prob pass too), one optimizer
step per iteration over the 32 responses in 4 micro-batches of 1 prompt x 8 responses (gradient
accumulation), AdamW lr 1e-6 with global-norm clipping 1.0, float32, "token-mean" loss aggregation.
Rollout and log-prob micro-batches hold all 4 prompts (one sampler call of 32 rows). Reward: the
trivial `len(completion_text) % 2` (same rule as ours, on each side's own decoded text).

Tunix takes strings: a whitespace "tokenizer" maps "12 7 ..." to ids (as in `tunix_sampler.py`).
Phases are timed by wrapping `RLCluster.generate` (sampling), `GRPOLearner._compute_rewards` (reward),
`RLCluster.get_old_per_token_logps` / `get_ref_per_token_logps` (old/ref log-probs; never called in this
config) and `RLCluster.update_actor` (update: one call per micro-batch); an iteration is one
`_run_global_step` (everything, including Tunix's own metric bookkeeping), ended by blocking on the
params. Prints one `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import random_prompts  # noqa: E402
from shapes import SHAPES  # noqa: E402


class IdTokenizer:
  """encode("3 17 5") -> [3, 17, 5]; no BOS; pad 0; eos -1 (never sampled)."""

  def encode(self, text, **kw):
    return [int(t) for t in text.split()]

  def decode(self, ids, **kw):
    return " ".join(str(int(i)) for i in ids)

  def bos_id(self):
    return None

  def eos_id(self):
    return -1

  def pad_id(self):
    return 0


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--shape", default="mini", choices=sorted(SHAPES))
  ap.add_argument("--prompts", type=int, default=4)
  ap.add_argument("--group", type=int, default=8)
  ap.add_argument("--prompt", type=int, default=64)
  ap.add_argument("--new", type=int, default=128)
  ap.add_argument("--iterations", type=int, default=3, help="the first one compiles")
  ap.add_argument("--beta", type=float, default=0.0)
  args = ap.parse_args()

  import importlib.metadata as md
  import json

  import jax
  import numpy as np
  import optax
  from flax import nnx
  from tunix.models.llama3 import model as llama3
  from tunix.rl import rl_cluster as rl_cluster_lib
  from tunix.rl.grpo import grpo_learner
  from tunix.rl.rollout import base_rollout

  s = SHAPES[args.shape]
  cfg = llama3.ModelConfig(num_layers=s["num_layers"], vocab_size=s["vocab_size"], embed_dim=s["hidden_size"],
                           hidden_dim=s["intermediate_size"], num_heads=s["num_heads"], head_dim=s["head_dim"],
                           num_kv_heads=s["num_kv_heads"], rope_theta=int(s["rope_theta"]),
                           norm_eps=s["rms_norm_eps"], weight_tying=True)
  mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  with jax.set_mesh(mesh):
    model = llama3.Llama3(cfg, rngs=nnx.Rngs(0))
  Role = rl_cluster_lib.Role
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.adamw(1e-6, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0))
  training = rl_cluster_lib.RLTrainingConfig(
      actor_optimizer=tx, eval_every_n_steps=10 ** 9, max_steps=args.iterations,
      mini_batch_size=args.prompts, train_micro_batch_size=1, rollout_micro_batch_size=args.prompts,
      compute_logps_micro_batch_size=args.prompts, checkpoint_root_directory=None,
      metrics_logging_options=None, pbar_description=None)
  rollout = base_rollout.RolloutConfig(
      max_tokens_to_generate=args.new, max_prompt_length=args.prompt, kv_cache_size=args.prompt + args.new,
      temperature=1.0, top_p=1.0, top_k=None, eos_tokens=[-1])
  cluster = rl_cluster_lib.RLCluster(
      actor=model, reference=None, tokenizer=IdTokenizer(),
      cluster_config=rl_cluster_lib.ClusterConfig(
          role_to_mesh={Role.ACTOR: mesh, Role.REFERENCE: mesh, Role.ROLLOUT: mesh},
          rollout_engine="vanilla", offload_to_cpu=False, training_config=training, rollout_config=rollout))

  def reward(prompts, completions, **kw):
    return [float(len(c) % 2) for c in completions]

  learner = grpo_learner.GRPOLearner(
      rl_cluster=cluster, reward_fns=[reward],
      algo_config=grpo_learner.GRPOConfig(num_generations=args.group, num_iterations=1, beta=args.beta,
                                          epsilon=0.2, loss_agg_mode="token-mean"))

  phases: list[dict] = []
  current: dict = {}

  def timed(obj, name, phase):
    fn = getattr(obj, name)

    def wrapper(*a, **kw):
      t = time.perf_counter()
      out = fn(*a, **kw)
      jax.block_until_ready(out)
      current[phase] = current.get(phase, 0.0) + time.perf_counter() - t
      return out
    setattr(obj, name, wrapper)

  timed(cluster, "generate", "sample_s")
  timed(learner, "_compute_rewards", "reward_s")
  timed(cluster, "get_old_per_token_logps", "old_logprob_s")
  timed(cluster, "get_ref_per_token_logps", "old_logprob_s")
  timed(cluster, "update_actor", "update_s")
  run_step = learner._run_global_step

  def global_step(*a, **kw):
    current.clear()
    t = time.perf_counter()
    out = run_step(*a, **kw)
    jax.block_until_ready(nnx.state(cluster.actor_trainer.model))
    phases.append(dict(current, iteration_s=time.perf_counter() - t))
    print(f"tunix iteration {len(phases)}: " + json.dumps({k: round(v, 3) for k, v in phases[-1].items()}),
          file=sys.stderr, flush=True)
    return out
  learner._run_global_step = global_step

  data = [{"prompts": [" ".join(map(str, row)) for row in
                       random_prompts(args.prompts, args.prompt, s["vocab_size"], seed=i)]}
          for i in range(args.iterations)]
  t = time.perf_counter()
  learner.train(data)
  total = time.perf_counter() - t
  dtype = str(jax.tree.leaves(nnx.state(cluster.actor_trainer.model))[0].dtype)
  print("RESULT " + json.dumps(dict(
      name="tunix", shape=args.shape, iterations=[{k: round(v, 4) for k, v in p.items()} for p in phases],
      train_total_s=round(total, 3), tunix=md.version("google-tunix"), jax=jax.__version__, dtype=dtype,
      old_logprob_pass=bool(any("old_logprob_s" in p for p in phases)))), flush=True)


if __name__ == "__main__":
  main()
