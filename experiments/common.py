"""Shared machinery of the mechanism study and its ablations: warm start, RL runs, evaluation.

Everything a number depends on is a pure function of the experiment config and the seed:
  * the warm start (`warm_start`): a tiny `Transformer` (char tokenizer) trained by
    `simko_jax.train.sft` on gold Countdown solutions; cached as `warm_start.npz` + `warm_start.json`
    (with a hash of the model / task / warm-up config) so every method and seed starts from the same
    params, and a rerun with the same config reuses it;
  * an RL run (`rl_run`): the library's own trainer pieces (`train.step.jit_train_step`, the KV-cache
    `Sampler`, the grain `PromptPipeline`, `train.loop.iteration`) on a library config
    (`simko_jax.config.default_config()` + the experiment's `rl` fields + the method's `algo` fields,
    validated); randomness is (seed, step) as in the trainer;
  * evaluation (`evaluate_policy`): the library's pass@k harness (`simko_jax.eval.harness.evaluate`,
    unbiased estimator) on fixed held-out problems, and the concentration metrics (Lambda(1..3),
    rank-1..5 probabilities, `simko_jax.metrics.concentration`) teacher-forced on the policy's own
    samples of fixed probe problems (`Bench.probe`), over all response tokens and over the
    expression tokens.
Compiled programs (sampler, train step) are shared between runs of one process; they are the same
programs a fresh process compiles, so sharing changes no number.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from experiments import task
from simko_jax.config import default_config, validate
from simko_jax.data.pipeline import PipelineConfig, PromptPipeline
from simko_jax.eval.harness import evaluate
from simko_jax.models.char_tokenizer import CharTokenizer
from simko_jax.models.config import tiny_llama3
from simko_jax.models.transformer import Transformer
from simko_jax.parallel import model_shardings, opt_state_shardings, shard_model
from simko_jax.rewards.registry import get_reward_fn
from simko_jax.sampling.sampler import Sampler
from simko_jax.train import checkpoint_layout, loop, sft
from simko_jax.train.setup import Run, build_mesh
from simko_jax.train.step import LossHParams, is_on_policy, jit_logprobs, jit_train_step, make_optimizer

TRAIN_KEYS = ("reward_mean", "accuracy", "pass_at_group", "response_length", "truncated_fraction",
              "groups_all_equal", "entropy", "lambda_1", "lambda_2", "lambda_3", "lambda_sample",
              "rank1_prob", "rank2_prob", "rank3_prob", "rank4_prob", "rank5_prob", "gate_fraction",
              "boosted_fraction", "clipfrac_high", "clipfrac_low", "ppo_kl", "rank1_fraction", "loss",
              "grad_norm", "updates_skipped", "sample_s", "update_s")


def config_hash(*parts) -> str:
  text = json.dumps([p.to_dict() if isinstance(p, ml_collections.ConfigDict) else p for p in parts],
                    sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_config(m):
  """The tiny Llama-style policy of `cfg.model` (char vocabulary, no RoPE scaling)."""
  return tiny_llama3(vocab_size=m.vocab_size, hidden_size=m.hidden_size, num_layers=m.num_layers,
                     num_heads=m.num_heads, num_kv_heads=m.num_heads,
                     head_dim=m.hidden_size // m.num_heads, intermediate_size=m.intermediate_size,
                     rope_scaling=None, rope_theta=10000.0, max_position_embeddings=m.max_positions)


class InProcessScorer:
  """`VerifierPool.score` in this process. The Countdown verifier is a hand-written parser with
  bounded cost (no eval), so it needs no worker isolation; this keeps the 2 CPU cores for JAX."""

  def score(self, batch):
    return [float(get_reward_fn(source)(text, truth)) for text, truth, source in batch]

  def close(self):
    pass


class _Log:
  def event(self, message):
    print(f"[rl] {message}", flush=True)


def _flatten_params(params) -> dict[str, np.ndarray]:
  flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))[0]
  return {jax.tree_util.keystr(path): np.asarray(x) for path, x in flat}


def _restore_flat(flat: dict[str, np.ndarray], target: dict, model_cfg) -> dict:
  """The pure-dict params `target` filled from `_flatten_params` output. Warm starts saved before the
  fused decoder layout (issue 22: separate wq/wk/wv, w_gate/w_up; e.g. the committed study-4 warm start,
  whose sha256 is pinned) are fused by the library's checkpoint conversion, exactly."""
  if "['layers']['wq']" not in flat:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(flat[jax.tree_util.keystr(p)]) for p, _ in leaves])
  old: dict = {}
  for key, value in flat.items():
    *parents, leaf = re.findall(r"\['([^']+)'\]", key)
    node = old
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = jnp.asarray(value)
  return checkpoint_layout.convert_to_fused(model_cfg, old, target)


def warm_start(cfg, directories, log=print, make_pairs=None, split=None):
  """(graphdef, params, info): the supervised warm start. Loaded from the first of `directories` that
  holds one for this config (hash of model / task / warm-up fields, and of `split`, a description of
  the training problems, when given); otherwise trained and saved into the last of them (never over
  another config's cache). make_pairs(step, batch_size): the warm-up pairs (default: `task.sft_pairs`
  over every training problem)."""
  key = config_hash(cfg.model, cfg.task, cfg.sft, *([split] if split is not None else []))
  model = Transformer(model_config(cfg.model), rngs=nnx.Rngs(cfg.model.init_seed))
  graphdef, params = nnx.split(model)
  for directory in dict.fromkeys(d for d in directories if d):
    npz, meta = os.path.join(directory, "warm_start.npz"), os.path.join(directory, "warm_start.json")
    if not (os.path.isfile(npz) and os.path.isfile(meta)):
      continue
    with open(meta) as f:
      info = json.load(f)
    if info.get("hash") != key:
      log(f"[warm start] {npz} is for another config (hash {info.get('hash')} != {key})")
      continue
    with np.load(npz) as data:
      flat = dict(data)
    nnx.replace_by_pure_dict(params, _restore_flat(flat, nnx.to_pure_dict(params), model.cfg))
    log(f"[warm start] loaded {npz} (hash {key})")
    return graphdef, params, info
  directory = [d for d in directories if d][-1]
  npz, meta = os.path.join(directory, "warm_start.npz"), os.path.join(directory, "warm_start.json")
  tokenizer = CharTokenizer()
  tcfg = task.task_config(cfg.task)
  s = cfg.sft
  start = time.time()
  make_pairs = make_pairs or (lambda step, b: task.sft_pairs(tcfg, step, b, s.seed))
  params, losses = sft.train_sft(
      model, tokenizer, make_pairs, steps=s.steps,
      batch_size=s.batch_size, seq_len=s.seq_len, learning_rate=s.learning_rate,
      warmup_steps=s.warmup_steps, weight_decay=s.weight_decay, log_every=s.log_every, log=log)
  info = {"hash": key, "steps": s.steps, "wall_s": round(time.time() - start, 1),
          "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
          "loss_first_50": float(np.mean(losses[:50])), "loss_last_50": float(np.mean(losses[-50:])),
          "loss_curve": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)]}
  os.makedirs(directory, exist_ok=True)
  np.savez(npz, **_flatten_params(params))
  with open(meta, "w") as f:
    json.dump(info, f, indent=1)
  log(f"[warm start] trained {info['num_params']} params in {info['wall_s']} s, "
      f"loss {info['loss_first_50']:.3f} -> {info['loss_last_50']:.3f}; saved {npz}")
  return graphdef, params, info


def rl_config(cfg, method: dict, seed: int) -> ml_collections.ConfigDict:
  """The library config of one RL run: defaults + `cfg.rl` + the method's algo fields, validated."""
  c = default_config()
  c.update(cfg.rl.to_dict())
  c.algo.update(dict(method))
  c.seed = int(seed)
  return validate(c, vocab_size=cfg.model.vocab_size, num_devices=jax.device_count())


class Bench:
  """What every run of a study shares: tokenizer, problems, the compiled sampler and train steps."""

  def __init__(self, cfg, graphdef, warm_params):
    self.cfg = cfg
    self.tokenizer = CharTokenizer()
    self.graphdef = graphdef
    self.warm_params = warm_params
    tcfg = task.task_config(cfg.task)
    self.train_examples = task.train_examples(tcfg)
    self.eval_examples = task.held_out_examples(tcfg, cfg.eval.num_problems)
    self.probe_examples = self.eval_examples[:cfg.eval.probe_problems]
    self.scorer = InProcessScorer()
    self.sampler = Sampler(graphdef, pad_id=self.tokenizer.pad_id, stop_ids=(self.tokenizer.eos_id,),
                           mesh=None, prompt_bucket=cfg.rl.data.prompt_bucket)
    self.mesh = build_mesh(default_config().train)
    self._steps: dict = {}
    self._probe_prompts = self._probe_fn = None

  def compiled(self, rc, graphdef, param_shardings, opt_shardings, tx):
    """The jitted train step and log-prob forward for this loss / optimizer (cached per config)."""
    key = (LossHParams.from_config(rc), config_hash(rc.optim), rc.train.steps, rc.rollout.prompts_per_step,
           rc.algo.mini_batch_prompts, rc.algo.ppo_epochs)
    if key not in self._steps:
      loss_cfg = LossHParams.from_config(rc)
      self._steps[key] = (jit_train_step(graphdef, tx, loss_cfg, param_shardings, opt_shardings,
                                         self.mesh),
                          jit_logprobs(graphdef, loss_cfg, param_shardings, self.mesh))
    return self._steps[key]

  def build_run(self, rc) -> Run:
    """A library `Run` (no checkpointer: these runs are short) starting from the warm start."""
    model = nnx.merge(self.graphdef, jax.tree.map(jnp.copy, self.warm_params))
    with jax.set_mesh(self.mesh):
      shard_model(model, self.mesh)
    graphdef, params = nnx.split(model)
    param_shardings = model_shardings(model, self.mesh)
    updates = rc.algo.ppo_epochs * (rc.rollout.prompts_per_step // rc.algo.mini_batch_prompts)
    tx, schedule = make_optimizer(rc.optim, rc.train.steps * updates)
    opt_shardings = opt_state_shardings(tx, params, param_shardings, self.mesh)
    opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
    train_step, logprob_fn = self.compiled(rc, graphdef, param_shardings, opt_shardings, tx)
    pipeline = PromptPipeline(self.train_examples, self.tokenizer, PipelineConfig(
        num_prompts=rc.rollout.prompts_per_step, max_prompt_len=rc.data.max_prompt_len,
        bucket_size=rc.data.prompt_bucket, pad_id=self.tokenizer.pad_id, seed=rc.seed,
        num_epochs=rc.data.num_epochs, overlong="error"))
    return Run(cfg=rc, mesh=self.mesh, graphdef=graphdef, params=params, opt_state=opt_state,
               ref_params=None, rng=jax.random.key(rc.seed), step=0, tokenizer=self.tokenizer,
               tokenizer_source="char", model_config={}, sampler=self.sampler, pipeline=pipeline,
               iterator=pipeline.iterator(), pool=self.scorer, train_step=train_step,
               logprob_fn=logprob_fn, schedule=schedule, checkpointer=None, eval_examples=[])

  def evaluate_policy(self, params) -> dict:
    """pass@k (k = 1, 2, 4, ..., n) on the held-out problems and concentration on the probe set.
    The harness's generations go to a temporary directory (always a fresh draw, never a resume)."""
    out_dir = tempfile.mkdtemp(prefix="simko_eval_")
    try:
      results = self._evaluate(params, out_dir)
    finally:
      shutil.rmtree(out_dir, ignore_errors=True)
    bench = results["benchmarks"]["countdown"]
    return {"pass@k": bench["pass@k"], "maj@k": bench["maj@k"],
            "mean_response_tokens": bench["mean_response_tokens"],
            "truncated_frac": bench["truncated_frac"], "eval_wall_s": round(results["run"]["wall_s"], 1),
            "concentration": self.probe(params)}

  def _evaluate(self, params, out_dir):
    e = self.cfg.eval
    return evaluate(params, self.tokenizer, {"countdown": self.eval_examples}, dict(
        num_samples=e.num_samples, temperature=e.temperature, top_p=e.top_p,
        max_new_tokens=e.max_new_tokens, max_prompt_len=self.cfg.rl.data.max_prompt_len,
        batch_problems=e.batch_problems, seed=e.seed, progress=False, maj_method="first_k",
        truncated_is_wrong=True, out_dir=out_dir), out_dir, sampler=self.sampler, pool=self.scorer,
        log=lambda _: None)

  def probe(self, params) -> dict:
    """Concentration of the policy on its own samples of the probe problems (temperature
    `eval.probe_temperature`, the same draw key every call): `concentration_metrics` (Lambda(1..3),
    Lambda_sample, rank-1..5 probabilities) over all response tokens ("all") and over the expression
    tokens only ("expr": the characters inside \\boxed{...}, where the choices are made; the fixed
    format characters around them are near-deterministic and dilute the all-token averages)."""
    e = self.cfg.eval
    if self._probe_prompts is None:
      from simko_jax.sampling.text import encode_prompts
      tokens, mask = encode_prompts(self.tokenizer, [ex.prompt for ex in self.probe_examples],
                                    pad_id=self.tokenizer.pad_id)
      pad = self.cfg.rl.data.prompt_bucket - tokens.shape[1]
      self._probe_prompts = (np.pad(tokens, ((0, 0), (pad, 0)), constant_values=self.tokenizer.pad_id),
                             np.pad(mask, ((0, 0), (pad, 0))))
      self._probe_fn = _probe_stats_fn(self.graphdef, float(e.probe_temperature))
    tokens, mask = self._probe_prompts
    out = self.sampler.sample(params, tokens, mask, jax.random.key(e.seed), n=e.probe_samples,
                              max_new_tokens=e.max_new_tokens, temperature=e.probe_temperature)
    response = np.asarray(out.response_tokens)
    all_mask = np.asarray(out.response_mask)
    expr_mask = expression_mask(response, all_mask, self.tokenizer)
    attn = np.concatenate([np.asarray(out.prompt_mask), all_mask], axis=-1)
    m_all, m_expr = self._probe_fn(params, np.asarray(out.tokens), attn, all_mask, expr_mask)
    return {"all": {k: round(float(v), 5) for k, v in sorted(m_all.items())},
            "expr": {k: round(float(v), 5) for k, v in sorted(m_expr.items())}}


def expression_mask(response_BxN: np.ndarray, mask_BxN: np.ndarray, tokenizer) -> np.ndarray:
  """1 on the tokens strictly inside the first `{` and the last `}` of each response (to the end of
  the response, minus a final EOS, when no `}` follows)."""
  open_id, close_id = tokenizer.encode("{")[0], tokenizer.encode("}")[0]
  out = np.zeros_like(mask_BxN)
  for i, (row, valid) in enumerate(zip(response_BxN, mask_BxN)):
    n = int(valid.sum())
    ids = row[:n].tolist()
    if open_id not in ids:
      continue
    lo = ids.index(open_id) + 1
    hi = n - 1 - ids[::-1].index(close_id) if close_id in ids[lo:] else n - (ids[-1] == tokenizer.eos_id)
    out[i, lo:max(lo, hi)] = 1
  return out


def _probe_stats_fn(graphdef, temperature: float):
  from simko_jax.losses.token_stats import token_stats_from_logits
  from simko_jax.metrics.concentration import concentration_metrics

  @jax.jit
  def stats(params, tokens_BxT, attn_BxT, all_mask_BxN, expr_mask_BxN):
    model = nnx.merge(graphdef, params)
    n = all_mask_BxN.shape[1]
    logits = model(tokens_BxT, attention_mask_BxT=attn_BxT)[:, -n - 1:-1]
    ts = token_stats_from_logits(logits, tokens_BxT[:, -n:], num_candidates=5,
                                 temperature=temperature)
    return tuple(concentration_metrics(ts.topk_logp, ts.logp, m, num_lambda=3, num_rank_probs=5)
                 for m in (all_mask_BxN, expr_mask_BxN))
  return stats


def rl_run(bench: Bench, name: str, method: dict, seed: int, log=print) -> dict:
  """Evaluates the warm start's RL run `name` (method fields `method`, seed `seed`): RL steps with the
  library's `train.loop.iteration`, then pass@k and concentration of the final policy.
  Returns {"name", "seed", "config_hash", "train": [per-step metrics], "after": eval, "wall_s"}."""
  rc = rl_config(bench.cfg, method, seed)
  run = bench.build_run(rc)
  start = time.time()
  steps = []
  every = bench.cfg.eval.probe_every
  probes = [{"step": 0, **bench.probe(run.params)}] if every else []
  for _ in range(rc.train.steps):
    metrics = loop.iteration(run, _Log())
    run.step += 1
    record = {"step": run.step}
    record.update({k: float(metrics[k]) for k in TRAIN_KEYS if k in metrics})
    steps.append(record)
    if every and run.step % every == 0 and run.step < rc.train.steps:
      probes.append({"step": run.step, **bench.probe(run.params)})
    if run.step % max(1, rc.train.steps // 5) == 0 or run.step == rc.train.steps:
      log(f"[{name} s{seed}] step {run.step}/{rc.train.steps} reward {record['reward_mean']:.3f} "
          f"Lambda(1) {record.get('lambda_1', float('nan')):.3f} "
          f"Lambda(2) {record.get('lambda_2', float('nan')):.3f} "
          f"rank1 {record.get('rank1_prob', float('nan')):.3f} ({time.time() - start:.0f} s)")
  train_s = time.time() - start
  after = bench.evaluate_policy(run.params)
  if every:
    probes.append({"step": run.step, **after["concentration"]})
  log(f"[{name} s{seed}] after: pass@1 {after['pass@k']['1']:.3f} "
      f"pass@{bench.cfg.eval.num_samples} {after['pass@k'][str(bench.cfg.eval.num_samples)]:.3f}")
  return {"name": name, "seed": seed, "config_hash": config_hash(rc, bench.cfg.eval),
          "method": dict(method), "train": steps, "probes": probes, "after": after,
          "train_s": round(train_s, 1), "wall_s": round(time.time() - start, 1),
          "load_avg_1min": round(os.getloadavg()[0], 1)}
