"""Study 2: GRPO vs SimKO on SmolLM2-135M-Instruct with the embedded default task, on 2 CPU cores.

Command:  python experiments/smollm2.py              (writes experiments/results/smollm2/)
Smoke:    python experiments/smollm2.py --quick      (1 step per method, tiny evaluation)

Each method is the embedded default run (`configs/default.py`: SimKO; `configs/default_grpo.py`: the
same with GRPO), trained by the library's own trainer (`simko_jax.train.loop.run`, checkpoints and
all) for `train_steps` steps instead of 12, with the held-out evaluation enlarged to `eval_problems`
problems x `eval_samples` samples (pass@k for k = 1, 2, 4, ..., eval_samples) before and after.
Concentration (Lambda(1..3), rank-1..5 probabilities) is logged every step by the trainer and measured
before / after on a fixed probe set (`simko_jax.eval.concentration.concentration_analysis`).

Time: the default run takes ~30 s per step on an idle 2-core machine (README); 16 steps plus the two
evaluations and the probes is about 12-15 min per method there (about 2.5x that under heavy load).
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.name = "smollm2"
  c.methods = ml_collections.ConfigDict(dict(grpo="configs/default_grpo.py",
                                             simko="configs/default.py"))
  c.seed = 0
  c.train_steps = 16
  c.eval_problems = 16
  c.eval_samples = 16
  c.probe = ml_collections.ConfigDict(dict(
      num_prompts=16, num_samples=4, max_new_tokens=48, temperature=1.0, forward_rows=16))
  c.keep_checkpoints = False      # the final checkpoint (~1.6 GB with the optimizer) is deleted
  return c


def quick(c):
  c.train_steps = 1
  c.eval_problems = 2
  c.eval_samples = 2
  c.probe.num_prompts = 2
  c.probe.num_samples = 2
  c.probe.max_new_tokens = 8
  c.probe.forward_rows = 4
  return c
