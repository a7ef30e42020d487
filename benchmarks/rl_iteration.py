"""One RL iteration, phase by phase: our trainer (GRPO and SimKO) vs Google Tunix 0.1.7's GRPO.

  python benchmarks/rl_iteration.py                                   # mini shape, ours + Tunix (~10 min)
  python benchmarks/rl_iteration.py --shape smollm2 --iterations 2    # SmolLM2-135M shape (~30 min)
  python benchmarks/rl_iteration.py --peers none                      # ours only
  python benchmarks/rl_iteration.py --shape smollm2 --paths phase,fused --methods simko --peers none \
      --iterations 3 --new 32                                         # fused rl_train_step vs phases

Workload (both; the issue's target config, = `config.default_config()`'s rollout/algo defaults): 4 prompts of
64 random token ids (no padding) x 8 rollouts, up to 128 new tokens (ours stops a row at its EOS id, which
random weights almost never sample; Tunix's eos id is -1, never sampled), temperature 1, top_p 1, KL
coefficient 0 on both (ours `algo.kl_coef = 0`, Tunix `beta = 0`: no reference model), one PPO epoch over
one mini-batch (on-policy: both skip the separate old-log-prob forward; ours takes old log-probs from the
update's own forward, Tunix from `stop_gradient` of its loss forward), one AdamW step (lr 1e-6, clip 1.0)
per iteration over the 32 responses in 4 gradient-accumulation micro-batches of 8, float32 params and
compute, random weights of the same `--shape` (`benchmarks/peers/shapes.py`). Reward on both: the trivial
`len(decoded_response_text) % 2`.

Ours is the real trainer: `train.setup.build_run` on `default_config()` (the model source is swapped
for a random model of `--shape` with the character tokenizer, the prompt iterator for random ids and the
verifier pool's `score` for the trivial reward), then `train.loop.iteration` per iteration, whose own
phase timings are reported: sampling (`sample_s`: sampler call + the verifier's inputs to the host),
reward (`reward_s`: decode + score), old log-probs (`old_logprob_s`: the batch assembled on device; the
old-log-prob forward is skipped on-policy), update (`update_s`: the device gathers of the micro-batches
and the jitted train step; metrics come to the host once after it). The iteration time is the wall time of
`iteration()`. Our GRPO and SimKO runs are built side by side and their iterations interleaved (GRPO 1,
SimKO 1, GRPO 2, ...) so that load drift on a shared machine hits both alike. Tunix:
`benchmarks/peers/tunix_grpo.py` in its own venv (a subprocess, timed by wrapping its phase methods, see
that file); it runs between the first and the second half of our iterations (never concurrently with
them), so our warm median spans the peer's time window.

The first iteration compiles (reported separately); "warm" = the median of iterations 2..N. Tokens/s per
phase: sampling and reward = generated tokens / phase time; old log-probs and update = the trained
tokens (32 x (64 + 128)) / phase time; iteration = generated tokens / iteration time. MFU of the update =
`metrics.flops.train_step_flops` / update time / the float32 matmul FLOP/s measured in this run
(`sampling.matmul_flops`, at the start and at the end; the higher is used); sampling roofline =
2 x (body + head params) x tokens/s / the same.
`--paths phase,fused` adds the single compiled `rl_train_step` (train/fused.py, `train.fused_step = "on"`;
its reward is the run's on-device arith verifier on the char tokenizer, not the trivial rule: the
comparison is of time and bytes, not of rewards); its runs interleave with the phase runs (A/B). Only the
iteration time exists for it (one program: no phase times). Host <-> device bytes per iteration are
counted for every run of ours at `jax.device_put` / `jax.device_get` (nbytes of what they move).
Targets: ours/Tunix iteration time <= 0.8, SimKO/GRPO <= 1.10. Prints a table and one `JSON {...}` line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "peers"))
sys.path.insert(0, HERE)
from shapes import SHAPES  # noqa: E402

PHASES = ("sample_s", "reward_s", "old_logprob_s", "update_s")


def model_config(shape: str):
  from simko_jax.models.config import ModelConfig
  s = SHAPES[shape]
  return ModelConfig(vocab_size=s["vocab_size"], hidden_size=s["hidden_size"], num_layers=s["num_layers"],
                     num_heads=s["num_heads"], num_kv_heads=s["num_kv_heads"], head_dim=s["head_dim"],
                     intermediate_size=s["intermediate_size"], rope_theta=s["rope_theta"],
                     rms_norm_eps=s["rms_norm_eps"], tie_word_embeddings=True, bos_token_id=1,
                     eos_token_id=2, pad_token_id=0)


def bench_config(method: str, args, out_dir: str):
  from simko_jax.config import default_config
  cfg = default_config()
  cfg.out_dir = out_dir
  cfg.model.checkpoint = "random"  # replaced by --shape below (random weights, char tokenizer)
  cfg.algo.method = method
  cfg.algo.kl_coef = 0.0
  cfg.rollout.prompts_per_step = cfg.algo.mini_batch_prompts = args.prompts
  cfg.rollout.group_size = args.group
  cfg.rollout.max_new_tokens = args.new
  cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.top_k = 1.0, 1.0, 0
  cfg.algo.micro_batch_size = args.group
  cfg.algo.ppo_epochs = 1
  cfg.data.prompt_bucket = args.prompt  # the sampler's prompt bucket (the data pipeline is replaced)
  cfg.data.max_prompt_len = 1024  # only so the (unused) procedural task's prompts survive set-up
  cfg.optim.learning_rate, cfg.optim.grad_clip, cfg.optim.weight_decay = 1e-6, 1.0, 0.0
  cfg.train.steps = args.iterations
  cfg.eval.enabled = False
  cfg.rewards.num_workers = 1
  cfg.rewards.truncated_is_wrong = False
  return cfg


class _NoLogger:
  def event(self, msg):
    print("event:", msg, flush=True)


def trivial_reward(batch):
  """Same rule as the Tunix peer: parity of the decoded response's length."""
  return [float(len(text) % 2) for text, _, _ in batch]


def random_prompt_iterator(args, vocab: int):
  from common import random_prompts
  i = 0
  while True:
    tokens = random_prompts(args.prompts, args.prompt, vocab, seed=i)
    yield {"prompt_tokens": tokens, "prompt_mask": np.ones_like(tokens),
           "prompt_lengths": np.full((args.prompts,), args.prompt, np.int32),
           "ground_truths": ["0"] * args.prompts, "data_sources": ["bench"] * args.prompts,
           "example_ids": list(range(i * args.prompts, (i + 1) * args.prompts)), "epochs": [0] * args.prompts}
    i += 1


class TransferCounter:
  """Sums the nbytes crossing `jax.device_put` (host leaves in) and `jax.device_get` (device leaves out)
  while active (every explicit transfer of our loop goes through one of the two)."""

  def __enter__(self):
    import jax
    self.put = self.get = 0
    self._saved = jax.device_put, jax.device_get
    def nbytes(tree, device):
      return sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(tree)
                 if isinstance(x, jax.Array) == device)
    def put(x, *a, **k):
      self.put += nbytes(x, False)
      return self._saved[0](x, *a, **k)
    def get(x, *a, **k):
      self.get += nbytes(x, True)
      return self._saved[1](x, *a, **k)
    jax.device_put, jax.device_get = put, get
    return self

  def __exit__(self, *exc):
    import jax
    jax.device_put, jax.device_get = self._saved


class OursRun:
  """Our trainer's `Run` for one method, built by the real `setup.build_run` (see module doc)."""

  def __init__(self, method: str, args, out_dir: str, fused: bool = False):
    from flax import nnx

    from simko_jax.models import Transformer
    from simko_jax.models.char_tokenizer import CharTokenizer
    from simko_jax.parallel import shard_model
    from simko_jax.train import setup
    from simko_jax.train.step import is_on_policy

    mcfg = model_config(args.shape)

    def load_model_and_tokenizer(model_cfg, seed=0, mesh=None):
      model = Transformer(mcfg, rngs=nnx.Rngs(seed))
      if mesh is not None:
        shard_model(model, mesh)
      return model, CharTokenizer(), "char"

    self.method, self.args = method, args
    self.cfg = bench_config(method, args, out_dir)
    self.cfg.train.fused_step = "on" if fused else "off"
    self.fused = fused
    original = setup.load_model_and_tokenizer
    setup.load_model_and_tokenizer = load_model_and_tokenizer
    try:
      self.run = setup.build_run(self.cfg)
    finally:
      setup.load_model_and_tokenizer = original
    self.run.iterator = random_prompt_iterator(args, mcfg.vocab_size)
    self.run.pool.score = trivial_reward
    self.iterations: list[dict] = []
    self.old_logprob_pass = not is_on_policy(self.cfg)

  def iteration(self) -> dict:
    import jax

    from simko_jax.train import loop
    run, args = self.run, self.args
    counter = TransferCounter()
    t = time.perf_counter()
    with counter:
      m = loop.fused_iterations(run, _NoLogger())[0][0] if self.fused else loop.iteration(run, _NoLogger())
      jax.block_until_ready(run.params)
    wall = time.perf_counter() - t
    run.step += 1
    row = {k: float(m.get(k, 0.0)) for k in PHASES}
    row.update(iteration_s=wall, sampled_tokens=round(m["response_length"] * args.prompts * args.group),
               h2d_bytes=counter.put, d2h_bytes=counter.get,
               sampler_compilations=int(m["sampler_compilations"]),
               train_step_compilations=run.train_step._cache_size(),
               logprob_compilations=0 if self.fused else run.logprob_fn._cache_size())
    self.iterations.append(row)
    print(f"ours {self.method}{' fused' if self.fused else ''} iteration {len(self.iterations)}: "
          + json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    return row

  def result(self) -> dict:
    return dict(name=f"ours-{self.method}" + ("-fused" if self.fused else ""), shape=self.args.shape,
                fused=self.fused, iterations=self.iterations,
                old_logprob_pass=self.old_logprob_pass)

  def close(self):
    self.run.close()


def bench_tunix(args) -> dict | None:
  if not os.path.exists(args.tunix_python):
    print(f"no Tunix venv at {args.tunix_python}: python -m venv /tmp/venv-peers && "
          "/tmp/venv-peers/bin/pip install -r requirements-bench.txt")
    return None
  cmd = [args.tunix_python, os.path.join(HERE, "peers", "tunix_grpo.py"), "--shape", args.shape,
         "--prompts", str(args.prompts), "--group", str(args.group), "--prompt", str(args.prompt),
         "--new", str(args.new), "--iterations", str(args.iterations)]
  print("$ " + " ".join(cmd), flush=True)
  proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  rows = [json.loads(l[len("RESULT "):]) for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not rows:
    print(f"Tunix GRPO failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return None
  row = rows[-1]
  for it in row["iterations"]:
    it.setdefault("old_logprob_s", 0.0)
    it["sampled_tokens"] = args.prompts * args.group * args.new
  print("RESULT " + json.dumps(row), flush=True)
  return row


def summarise(row: dict, args, flops: dict) -> dict:
  """Compile (first) iteration vs warm (median of the rest), tokens/s per phase, MFU/roofline."""
  its = row["iterations"]
  warm = its[1:] or its
  med = {k: statistics.median(it[k] for it in warm)
         for k in PHASES + ("iteration_s", "sampled_tokens", "h2d_bytes", "d2h_bytes") if k in warm[0]}
  trained = args.prompts * args.group * (args.prompt + args.new)
  gen = med["sampled_tokens"]
  rate = lambda tokens, s: round(tokens / s, 1) if s > 0 else None
  row["warm"] = {k: round(v, 4) for k, v in med.items()}
  row["first_iteration_s"] = round(its[0]["iteration_s"], 3)
  row["compile_overhead_s"] = round(its[0]["iteration_s"] - med["iteration_s"], 3)
  row["tokens_per_s"] = dict(sample=rate(gen, med["sample_s"]) or 0.0, reward=rate(gen, med["reward_s"]) or 0.0,
                             old_logprob=rate(trained, med["old_logprob_s"]) if row["old_logprob_pass"] else None,
                             update=rate(trained, med["update_s"]) or 0.0, iteration=rate(gen, med["iteration_s"]))
  ratio = lambda f, s: round(f / s / flops["matmul"], 4) if s > 0 else 0.0  # fused: no phase times
  row["update_mfu"] = ratio(flops["train_step"], med["update_s"])
  row["sample_roofline"] = ratio(flops["decode_per_token"] * gen, med["sample_s"])
  return row


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--shape", default="mini", choices=sorted(SHAPES))
  ap.add_argument("--prompts", type=int, default=4)
  ap.add_argument("--group", type=int, default=8)
  ap.add_argument("--prompt", type=int, default=64)
  ap.add_argument("--new", type=int, default=128)
  ap.add_argument("--iterations", type=int, default=3, help="per implementation; the first compiles")
  ap.add_argument("--methods", default="grpo,simko")
  ap.add_argument("--paths", default="phase", help="'phase', 'fused' or 'phase,fused' (A/B interleaved)")
  ap.add_argument("--peers", default="tunix", help="'tunix' or 'none'")
  ap.add_argument("--tunix_python", default="/tmp/venv-peers/bin/python")
  args = ap.parse_args()

  from sampling import matmul_flops
  from simko_jax.metrics import flops as F
  mcfg = model_config(args.shape)
  pc = F.param_counts(mcfg)
  flops = dict(matmul=matmul_flops(), decode_per_token=2.0 * (pc.body + pc.head),
               train_step=F.train_step_flops(mcfg, args.prompts * args.group, args.prompt, args.new))
  load = open("/proc/loadavg").read().split()[:3]
  print(f"shape {args.shape}: {pc.total / 1e6:.1f}M params; float32 matmul {flops['matmul'] / 1e9:.1f} "
        f"GFLOP/s; load average {' '.join(load)}", flush=True)

  # Ours: the methods' iterations interleaved (GRPO 1, SimKO 1, GRPO 2, ...), so load drift on a shared
  # machine hits both alike; the peer runs between our first and second halves of warm iterations.
  rows, tunix = [], None
  with tempfile.TemporaryDirectory() as tmp:
    runs = [OursRun(m, args, os.path.join(tmp, f"{m}_{p}"), fused=p == "fused")
            for m in args.methods.split(",") for p in args.paths.split(",")]
    try:
      before = 1 + (args.iterations - 1) // 2 if args.peers == "tunix" else args.iterations
      for _ in range(before):
        for r in runs:
          r.iteration()
      if args.peers == "tunix":
        tunix = bench_tunix(args)
      for _ in range(args.iterations - before):
        for r in runs:
          r.iteration()
    finally:
      for r in runs:
        r.close()
    rows = [r.result() for r in runs] + ([tunix] if tunix else [])
  # The float32 matmul rate is measured again at the end and the higher (less loaded) one is the reference,
  # so MFU / roofline are not inflated by a start-of-run measurement taken under load.
  flops["matmul_start"], flops["matmul_end"] = flops["matmul"], matmul_flops()
  flops["matmul"] = max(flops["matmul_start"], flops["matmul_end"])
  rows = [summarise(r, args, flops) for r in rows]
  load_end = open("/proc/loadavg").read().split()[:3]

  print(f"\n{'impl':<12}{'first s':>9}{'iter s':>8}{'sample s':>9}{'reward s':>9}{'oldlp s':>8}"
        f"{'update s':>9}  {'tok/s: sample':>13}{'reward':>10}{'update':>8}{'iter':>7}{'MFU upd':>9}"
        f"{'roof smp':>9}")
  for r in rows:
    w, t = r["warm"], r["tokens_per_s"]
    oldlp = f"{w['old_logprob_s']:.2f}" if r["old_logprob_pass"] else "skip"
    print(f"{r['name']:<12}{r['first_iteration_s']:>9.1f}{w['iteration_s']:>8.2f}{w['sample_s']:>9.2f}"
          f"{w['reward_s']:>9.3f}{oldlp:>8}{w['update_s']:>9.2f}  {t['sample']:>13.1f}{t['reward']:>10.0f}"
          f"{t['update']:>8.1f}{t['iteration']:>7.1f}{100 * r['update_mfu']:>8.1f}%"
          f"{100 * r['sample_roofline']:>8.1f}%")
  by = {r["name"]: r for r in rows}
  ratios = {}
  if "ours-grpo" in by and "ours-simko" in by:
    ratios["simko/grpo"] = round(by["ours-simko"]["warm"]["iteration_s"] / by["ours-grpo"]["warm"]["iteration_s"], 3)
    ratios["simko/grpo update"] = round(by["ours-simko"]["warm"]["update_s"] / by["ours-grpo"]["warm"]["update_s"], 3)
  for method in args.methods.split(","):
    a, b = by.get(f"ours-{method}"), by.get(f"ours-{method}-fused")
    if a and b:
      ratios[f"{method} fused/phase"] = round(b["warm"]["iteration_s"] / a["warm"]["iteration_s"], 3)
  for r in rows:
    if "h2d_bytes" in r["warm"]:
      print(f"{r['name']}: host->device {r['warm']['h2d_bytes']:.0f} B, device->host "
            f"{r['warm']['d2h_bytes']:.0f} B per iteration")
  if "tunix" in by:
    for name in ("ours-grpo", "ours-simko"):
      if name in by:
        ratios[f"{name}/tunix"] = round(by[name]["warm"]["iteration_s"] / by["tunix"]["warm"]["iteration_s"], 3)
        ratios[f"{name}/tunix sample"] = round(by[name]["warm"]["sample_s"] / by["tunix"]["warm"]["sample_s"], 3)
        ratios[f"{name}/tunix update"] = round(by[name]["warm"]["update_s"] / by["tunix"]["warm"]["update_s"], 3)
  targets = {"ours-grpo/tunix": 0.8, "ours-simko/tunix": 0.8, "simko/grpo": 1.10}
  for k, v in ratios.items():
    note = f" (target <= {targets[k]}: {'met' if v <= targets[k] else 'MISSED'})" if k in targets else ""
    print(f"{k}: {v:.3f}{note}")
  print(f"load average: start {' '.join(load)}, end {' '.join(load_end)}; float32 matmul GFLOP/s: start "
        f"{flops['matmul_start'] / 1e9:.1f}, end {flops['matmul_end'] / 1e9:.1f}")
  print("JSON " + json.dumps(dict(
      workload=dict(shape=args.shape, params=pc.total, prompts=args.prompts, group=args.group,
                    prompt=args.prompt, new_tokens=args.new, iterations=args.iterations, kl=0.0),
      matmul_gflops=round(flops["matmul"] / 1e9, 1), matmul_gflops_start_end=[
          round(flops["matmul_start"] / 1e9, 1), round(flops["matmul_end"] / 1e9, 1)],
      loadavg_start=load, loadavg_end=load_end,
      results=rows, ratios=ratios)))


if __name__ == "__main__":
  main()
