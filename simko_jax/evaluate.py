"""pass@k evaluation of a checkpoint on the math benchmarks, and its concentration analysis.

CLI (ml_collections config file + `--config.x=y` overrides):
  python -m simko_jax.evaluate --config configs/eval_default.py --checkpoint <run dir | orbax dir |
      HF dir | .gguf | smollm2 | Hub id org/name[@revision]> [--step N] [--config.benchmarks=gsm8k,math500 --config.num_problems=10
      --config.num_samples=8 --config.max_new_tokens=256 --config.out_dir=runs/eval_x]
      [--concentration_only]
Like the trainer: `jax.distributed` is initialised from the environment (SIMKO_COORDINATOR / SLURM /
TPU pod, `train/distributed.py`); the (data, fsdp, tensor) mesh comes from `--config.mesh_*`; params
are restored straight into the training rules' shardings; the compute dtype and max_new_tokens come
from the checkpoint's run config unless set (`eval/run_settings.py`). In a multi-process run all
processes sample each problem batch together (each feeds its share of the rows; `eval/generation.py`)
and process 0 alone verifies and writes the outputs.
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

from simko_jax import storage
from simko_jax.eval.concentration import concentration_analysis
from simko_jax.eval.config import (BENCHMARK_FILES, default_eval_config, k_values,
                                   validate_eval_config)
from simko_jax.eval.generation import Generation, sampler_generate_fn
from simko_jax.eval.harness import evaluate, load_benchmarks, make_eval_config
from simko_jax.eval.run_settings import command_line_fields, unknown_field_error
from simko_jax.eval.tables import results_table

__all__ = ["evaluate", "concentration_analysis", "run_concentration", "make_eval_config",
           "default_eval_config", "load_benchmarks", "k_values", "Generation", "sampler_generate_fn",
           "results_table", "BENCHMARK_FILES", "load_for_eval", "run_cli", "main"]


def load_for_eval(checkpoint: str, cfg, *, step: int | None = None, explicit: set[str] = frozenset(),
                  log=print):
  """(model, tokenizer, mesh, metadata) for the CLI: distributed runtime already initialised; the mesh
  built like the trainer's; params restored onto it by the training rules; `cfg.max_new_tokens` and
  the dtype resolved from the checkpoint's run config (`eval.run_settings`; `cfg` is updated)."""
  import jax
  import jax.numpy as jnp
  import ml_collections

  from simko_jax.config import ConfigError
  from simko_jax.eval.run_settings import expected_model_config, resolve_dtypes, resolve_max_new_tokens
  from simko_jax.train import policy_source
  from simko_jax.train.setup import build_mesh
  source = policy_source.locate(checkpoint, step)
  policy_source.check_model(source, expected_model_config(cfg.expect_model))
  cfg.max_new_tokens, length_from = resolve_max_new_tokens(cfg, source.train_config, explicit)
  dtype, param_dtype = resolve_dtypes(cfg, source.train_config)
  try:
    mesh = build_mesh(ml_collections.ConfigDict(dict(
        mesh_data=cfg.mesh_data, mesh_fsdp=cfg.mesh_fsdp, mesh_tensor=cfg.mesh_tensor)))
  except ValueError as err:
    raise ConfigError(f"config.mesh_data/mesh_fsdp/mesh_tensor: {err}") from err
  model = policy_source.load_model(source, dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(param_dtype),
                                   mesh=mesh)
  tokenizer = policy_source.load_tokenizer_of(source)
  metadata = {"checkpoint": checkpoint, "step": source.step, "dtype": dtype,
              "max_new_tokens_from": length_from, "mesh": dict(mesh.shape),
              "num_processes": jax.process_count()}
  log(f"[eval] {checkpoint} (step {source.step}): dtype {dtype}, max_new_tokens {cfg.max_new_tokens} "
      f"({length_from}), mesh {dict(mesh.shape)} over {jax.process_count()} process(es)")
  return model, tokenizer, mesh, metadata


def run_concentration(model, tokenizer, cfg, out_dir: str) -> dict:
  """`concentration_analysis` on the first `cfg.concentration.num_prompts` problems of
  `cfg.concentration.benchmark`; writes `<out_dir>/concentration.json` and returns the dict."""
  import ml_collections
  c = ml_collections.ConfigDict(cfg.to_dict())
  c.benchmarks, c.num_problems = cfg.concentration.benchmark, cfg.concentration.num_prompts
  examples = load_benchmarks(c)[cfg.concentration.benchmark]
  result = concentration_analysis(model, tokenizer, examples, cfg.concentration, seed=cfg.seed,
                                  chat=cfg.chat, system_prompt=cfg.system_prompt,
                                  prompt_suffix=cfg.prompt_suffix, max_prompt_len=cfg.max_prompt_len,
                                  prompt_template=cfg.prompt_template)
  result["benchmark"] = cfg.concentration.benchmark
  storage.makedirs(out_dir)
  storage.write_atomic(storage.join(out_dir, "concentration.json"), json.dumps(result, indent=2))
  return result


def _check_writable(out_dir: str) -> None:
  """ConfigError now (before a model is loaded) when `out_dir` (a local directory or a gs:// URL)
  cannot be written: a probe file is written and deleted (`storage.check_writable`)."""
  from simko_jax.config import ConfigError
  existed = storage.isdir(out_dir)
  try:
    storage.check_writable(out_dir)
  except OSError as err:  # StorageError included: unreachable, missing or read-only bucket
    raise ConfigError(f"{err} (config.out_dir is not writable: choose a writable directory)") from err
  if not existed and not storage.is_remote(out_dir):
    os.rmdir(out_dir)  # leave nothing behind if the checkpoint turns out to be unusable


def run_cli(cfg, checkpoint: str, *, step: int | None, concentration_only: bool,
            explicit: set[str]) -> None:
  """The CLI's work after flag parsing (raises ConfigError / CheckpointError / ... on bad input)."""
  import jax

  from simko_jax.config import ConfigError
  validate_eval_config(cfg)
  wants_concentration = cfg.concentration.enabled or concentration_only
  if wants_concentration and jax.process_count() > 1:
    raise ConfigError("the concentration analysis runs in one process only: run it without "
                      "SIMKO_COORDINATOR (or set --config.concentration.enabled=False)")
  if jax.process_index() == 0:
    _check_writable(cfg.out_dir)
  t0 = time.time()
  model, tokenizer, mesh, metadata = load_for_eval(checkpoint, cfg, step=step, explicit=explicit)
  sample_mesh = mesh if mesh.size > 1 else None
  if not concentration_only:
    results = evaluate(model, tokenizer, None, cfg, cfg.out_dir, mesh=sample_mesh, metadata=metadata)
    if jax.process_index() == 0:
      print(results_table({storage.as_path(cfg.out_dir).name: results}))
  if wants_concentration:
    conc = run_concentration(model, tokenizer, cfg, cfg.out_dir)
    print("[eval] concentration:", json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                               for k, v in conc.items()}))
  print(f"[eval] done in {time.time() - t0:.1f}s; outputs in {cfg.out_dir}")


def main(argv=None) -> int:
  """CLI entry (see module docstring). Bad input ends in one `error: ...` line and exit status 1."""
  from absl import app, flags
  from ml_collections import config_flags

  from simko_jax.config import ConfigError
  config_flag = config_flags.DEFINE_config_file("config", None, "Eval config file (configs/eval_*.py).")
  flags.DEFINE_string("checkpoint", None, "smollm2 | .gguf | HF dir | Hub id org/name[@revision] | "
                      "trainer run / checkpoints dir.")
  flags.DEFINE_integer("step", None, "Checkpoint step of a trainer run (default: newest complete).")
  flags.DEFINE_bool("concentration_only", False, "Only run the concentration analysis.")
  argv = list(sys.argv if argv is None else argv)

  def parse(args):
    unknown = unknown_field_error(command_line_fields(args[1:]))
    if unknown:
      sys.exit(f"error: {unknown}")
    try:
      parsed = flags.FLAGS(args)
    except (flags.Error, KeyError, ValueError, AttributeError) as err:
      sys.exit(f"error: {str(err).splitlines()[0]} (see python -m simko_jax.evaluate --help)")
    for name in ("config", "checkpoint"):
      if flags.FLAGS[name].value is None:
        sys.exit(f"error: --{name} is required (see python -m simko_jax.evaluate --help)")
    return parsed

  def run(_):
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # Orbax restore chatter
    from simko_jax.train import distributed
    from simko_jax.train.checkpoint import CheckpointError
    try:
      distributed.maybe_initialize()  # before anything touches a JAX backend
      run_cli(config_flag.value, flags.FLAGS.checkpoint, step=flags.FLAGS.step,
              concentration_only=flags.FLAGS.concentration_only,
              explicit=command_line_fields(argv[1:]))
    except (ConfigError, CheckpointError, distributed.DistributedConfigError, FileNotFoundError,
            ValueError, OSError) as err:
      sys.exit(f"error: {err}")

  sys.path.insert(0, os.getcwd())
  app.run(run, argv=argv, flags_parser=parse)
  return 0


if __name__ == "__main__":
  main()
