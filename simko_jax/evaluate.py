"""pass@k evaluation of a checkpoint on the math benchmarks, and its concentration analysis.

CLI (ml_collections config file + `--config.x=y` overrides):
  python -m simko_jax.evaluate --config configs/eval_default.py --checkpoint <run dir | orbax dir |
      HF dir | .gguf | smollm2> [--config.benchmarks=gsm8k,math500 --config.num_problems=10
      --config.num_samples=8 --config.max_new_tokens=256 --config.out_dir=runs/eval_x]
      [--concentration_only]
Writes `<out_dir>/<benchmark>/generations.jsonl` (resumable: rerun the same command to continue),
`<out_dir>/<benchmark>/metrics.json`, `<out_dir>/results.{json,md}` and, with
`--config.concentration.enabled=True`, `<out_dir>/concentration.json`.

Library:
  results = evaluate(model, tokenizer, {"arith": examples}, {"num_samples": 16}, "runs/x/eval_before")
  conc = concentration_analysis(model, tokenizer, examples, eval_cfg.concentration)
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from simko_jax import storage  # noqa: E402
from simko_jax.eval.concentration import concentration_analysis  # noqa: E402
from simko_jax.eval.config import (BENCHMARK_FILES, default_eval_config, k_values,  # noqa: E402
                                   validate_eval_config)
from simko_jax.eval.generation import Generation, sampler_generate_fn  # noqa: E402
from simko_jax.eval.harness import evaluate, load_benchmarks, make_eval_config  # noqa: E402
from simko_jax.eval.tables import results_table  # noqa: E402

__all__ = ["evaluate", "concentration_analysis", "run_concentration", "make_eval_config",
           "default_eval_config", "load_benchmarks", "k_values", "Generation", "sampler_generate_fn",
           "results_table", "BENCHMARK_FILES", "main"]


def _load_policy(path: str, *, dtype: str = "float32", mesh=None):
  """(model, tokenizer) from "smollm2", a `.gguf` file, a HF directory, or (via the trainer's
  `simko_jax.train.checkpoint.load_policy`) a trainer run / orbax checkpoint directory."""
  import jax.numpy as jnp

  from simko_jax.models import Tokenizer, load_pretrained, smollm2_gguf_path
  if path == "smollm2":
    path = smollm2_gguf_path()
  if storage.is_remote(path) and (path.endswith(".gguf") or storage.isfile(storage.join(path, "config.json"))):
    path = storage.local_copy(path)  # the GGUF / safetensors readers need local files
  is_gguf = os.path.isfile(path) and path.endswith(".gguf")
  is_hf = os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))
  if is_gguf or is_hf:
    model, _ = load_pretrained(path, dtype=getattr(jnp, dtype), mesh=mesh)
    return model, Tokenizer.load(path)
  if not storage.is_remote(path) and not os.path.exists(path):  # gs:// runs: Orbax reads them
    raise FileNotFoundError(f"checkpoint {path!r} does not exist (want 'smollm2', a .gguf file, a HF dir "
                            "or a trainer run / orbax checkpoint dir)")
  try:
    from simko_jax.train.checkpoint import load_policy
  except ImportError as err:
    raise RuntimeError(f"{path!r} is not a .gguf file or HF directory, and loading trainer/orbax "
                       f"checkpoints needs simko_jax.train.checkpoint.load_policy, which is not "
                       f"available in this build ({err})") from err
  model, tokenizer = load_policy(path, dtype=getattr(jnp, dtype))
  if mesh is not None:
    from simko_jax.parallel import shard_model
    model = shard_model(model, mesh)
  return model, tokenizer


def _make_mesh(cfg):
  """A ("data", "fsdp", "tensor") mesh with every device on the data axis, or None on one device."""
  import jax

  from simko_jax.parallel.mesh import make_mesh
  num = len(jax.devices())
  if num == 1:
    return None
  data = num if cfg.mesh_data == -1 else int(cfg.mesh_data)
  return make_mesh(data=data, fsdp=num // data)


def run_concentration(model, tokenizer, cfg, out_dir: str) -> dict:
  """`concentration_analysis` on the first `cfg.concentration.num_prompts` problems of
  `cfg.concentration.benchmark`; writes `<out_dir>/concentration.json` and returns the dict."""
  import ml_collections
  c = ml_collections.ConfigDict(cfg.to_dict())
  c.benchmarks, c.num_problems = cfg.concentration.benchmark, cfg.concentration.num_prompts
  examples = load_benchmarks(c)[cfg.concentration.benchmark]
  result = concentration_analysis(model, tokenizer, examples, cfg.concentration, seed=cfg.seed,
                                  chat=cfg.chat, system_prompt=cfg.system_prompt,
                                  prompt_suffix=cfg.prompt_suffix, max_prompt_len=cfg.max_prompt_len)
  result["benchmark"] = cfg.concentration.benchmark
  storage.makedirs(out_dir)
  storage.write_atomic(storage.join(out_dir, "concentration.json"), json.dumps(result, indent=2))
  return result


def main(argv=None) -> int:
  """CLI entry (see module docstring)."""
  from absl import app, flags
  from ml_collections import config_flags

  from simko_jax.config import ConfigError
  config_flag = config_flags.DEFINE_config_file("config", None, "Eval config file (configs/eval_*.py).")
  flags.DEFINE_string("checkpoint", None, "smollm2 | .gguf | HF dir | trainer run / orbax dir.")
  flags.DEFINE_bool("concentration_only", False, "Only run the concentration analysis.")
  flags.mark_flags_as_required(["config", "checkpoint"])

  def run(argv):
    del argv
    cfg = config_flag.value
    try:
      validate_eval_config(cfg)
    except ConfigError as err:
      sys.exit(f"error: {err}")
    try:  # a missing / read-only / unreachable bucket: one line before the model is loaded
      storage.check_writable(cfg.out_dir)
    except storage.StorageError as err:
      sys.exit(f"error: {err}")
    mesh = _make_mesh(cfg)
    t0 = time.time()
    model, tokenizer = _load_policy(flags.FLAGS.checkpoint, dtype=cfg.dtype, mesh=mesh)
    print(f"[eval] loaded {flags.FLAGS.checkpoint} in {time.time() - t0:.1f}s; "
          f"mesh={mesh and dict(mesh.shape)}")
    if not flags.FLAGS.concentration_only:
      results = evaluate(model, tokenizer, None, cfg, cfg.out_dir, mesh=mesh,
                         metadata={"checkpoint": flags.FLAGS.checkpoint})
      print(results_table({storage.as_path(cfg.out_dir).name: results}))
    if cfg.concentration.enabled or flags.FLAGS.concentration_only:
      conc = run_concentration(model, tokenizer, cfg, cfg.out_dir)
      print("[eval] concentration:", json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in conc.items()}))
    print(f"[eval] done in {time.time() - t0:.1f}s; outputs in {cfg.out_dir}")

  sys.path.insert(0, os.getcwd())
  app.run(run, argv=argv)
  return 0


if __name__ == "__main__":
  main()
