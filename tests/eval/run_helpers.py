"""A tiny trainer checkpoint written the way `simko_jax.main` writes one (params, train, data and meta
items via `RunCheckpointer`, tokenizer files via `write_run_tokenizer`), without running training."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from simko_jax.config import default_config
from simko_jax.train.checkpoint import RunCheckpointer
from simko_jax.train.policy_source import write_run_tokenizer


def write_tiny_run(out_dir, model, tokenizer, *, steps=(1,), tokenizer_source="char",
                   with_tokenizer: bool = True, eval_max_new_tokens: int = 6,
                   dtype: str = "float32") -> str:
  """Save `model` as checkpoint step(s) `steps` of a run in `out_dir`; returns the run dir."""
  cfg = default_config()
  cfg.out_dir = str(out_dir)
  cfg.eval.max_new_tokens = eval_max_new_tokens
  cfg.model.dtype = dtype
  ckpt = RunCheckpointer(f"{out_dir}/checkpoints", async_save=False, keep=5, every=1)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  meta = {"config": cfg.to_dict(), "model_config": model.cfg.to_hf_config(), "tokenizer": tokenizer_source}
  for step in steps:
    ckpt.save(step, params, {"count": np.zeros((), np.int32)}, jax.random.key(0), {}, meta, force=True)
  ckpt.close()
  if with_tokenizer:
    write_run_tokenizer(ckpt.directory, tokenizer)
  return str(out_dir)
