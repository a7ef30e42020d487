"""pass@k of the policy on held-out task problems before and after training, via `simko_jax.evaluate`.

Results go to `<out_dir>/eval_<tag>/` (generations.jsonl, metrics, results.md) and a summary to
`<out_dir>/eval_<tag>.json`: unbiased pass@k for k = 1, 2, 4, ..., n, maj@k, mean response length and
the truncated fraction. The trainer's sampler and verifier pool are reused (no recompilation, no new
worker processes).
"""

from __future__ import annotations

import json

import jax

from simko_jax import storage
from simko_jax.evaluate import evaluate


def eval_overrides(cfg) -> dict:
  """The evaluation settings implied by a training config (`config.eval` plus the task's checks)."""
  return dict(num_samples=cfg.eval.num_samples, temperature=cfg.eval.temperature,
              top_p=cfg.eval.top_p, max_new_tokens=cfg.eval.max_new_tokens,
              max_prompt_len=cfg.data.max_prompt_len, batch_problems=cfg.rollout.prompts_per_step,
              system_prompt=cfg.data.system_prompt, prompt_suffix=cfg.data.prompt_suffix,
              prompt_template=cfg.data.prompt_template, chat=True,  # = the training prompts
              math_extraction=cfg.rewards.math_extraction, seed=cfg.seed, progress=False,
              truncated_is_wrong=cfg.rewards.truncated_is_wrong,
              num_workers=cfg.rewards.num_workers, timeout_s=cfg.rewards.timeout_s)


def evaluate_run(run, tag: str, logger) -> dict:
  """Evaluates `run.params` on `run.eval_examples`; returns the task's summary dict."""
  if not run.eval_examples:
    return {}
  out_dir = str(storage.join(run.cfg.out_dir, f"eval_{tag}"))
  results = evaluate(run.params, run.tokenizer, {"task": run.eval_examples},
                     eval_overrides(run.cfg), out_dir, sampler=run.sampler,
                     mesh=run.mesh if run.mesh.size > 1 else None, pool=run.pool,
                     metadata={"tag": tag, "step": run.step}, log=lambda _: None)
  task = results["benchmarks"]["task"]
  summary = {"tag": tag, "step": run.step, "num_problems": len(run.eval_examples),
             "num_samples": run.cfg.eval.num_samples, **task}
  if jax.process_index() == 0:
    storage.write_atomic(storage.join(run.cfg.out_dir, f"eval_{tag}.json"),
                         json.dumps(summary, indent=1))
  shown = ", ".join(f"pass@{k} {v:.3f}" for k, v in task["pass@k"].items())
  logger.event(f"eval {tag} (step {run.step}, {len(run.eval_examples)} problems x "
               f"{run.cfg.eval.num_samples}): {shown}")
  return summary
