"""The embedded default: SimKO on SmolLM2-135M-Instruct, procedural arithmetic task, one CPU.

Command (from the repository root, after `bash setup.sh`):
  python -m simko_jax.main --config configs/default.py
Smoke mode (a couple of tiny steps, seconds):  --config.runlocal=True
Overrides: any field, e.g. --config.algo.alpha=0.05 --config.train.steps=40
"""

from simko_jax.config import default_config


def get_config():
  c = default_config()
  c.out_dir = "runs/default_simko"
  c.model.checkpoint = "smollm2"
  c.data.task = "arith"
  c.algo.method = "simko"
  c.optim.learning_rate = 2e-6
  return c
