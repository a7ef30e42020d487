"""`evaluate`: resumable pass@k evaluation of a policy on benchmark problem sets.

Layout under `out_dir`:
  <benchmark>/generations.jsonl   one line per finished problem (see `store.py`: fsync'd whole lines)
  <benchmark>/metrics.json        `summary.summarize` of that benchmark
  <benchmark>/sampling.json       the sampling settings; a rerun with other settings is refused
  results.json                    {"benchmarks": {name: metrics}, "average": ..., "paper_average": ...,
                                   "run": {per-benchmark problems sampled in this call, wall time}, "config"}
  results.md                      the Markdown table (`tables.results_table`)
Problems are cut into fixed batches of P = `batch_problems` consecutive problems (batch i = problems
[i*P, (i+1)*P) of the benchmark's problem list); batch i is always sampled with `batch_seed(seed,
benchmark, i)` and always padded to P prompts (repeating its last problem; the copies are discarded), so
a resumed run draws exactly the samples an uninterrupted one would have, and every batch reuses one
compiled sampler program per prompt bucket. A rerun samples only batches that still have an unfinished
problem and stores only the unfinished problems, so no problem is ever stored twice.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping, Sequence

import ml_collections

from simko_jax import storage
from simko_jax.data.sources import Example, read_examples
from simko_jax.eval.config import (BENCHMARK_FILES, PAPER_BENCHMARKS, benchmark_names, default_eval_config,
                                   k_values, resolve_data_dir, samples_for, validate_eval_config)
from simko_jax.eval.generation import GenerateFn, batch_seed, sampler_generate_fn, verify_batch
from simko_jax.eval.store import GenerationStore
from simko_jax.eval.summary import average_over, summarize
from simko_jax.eval.tables import results_table


def make_eval_config(overrides: Mapping[str, Any] | ml_collections.ConfigDict | None = None
                     ) -> ml_collections.ConfigDict:
  """`default_eval_config()` updated with `overrides` (a ConfigDict or nested dict), validated."""
  cfg = default_eval_config()
  if overrides is not None:
    cfg.update(overrides.to_dict() if isinstance(overrides, ml_collections.ConfigDict) else dict(overrides))
  return validate_eval_config(cfg)


def load_benchmarks(cfg) -> dict[str, list[Example]]:
  """{name: the first `num_problems` problems (all when 0)} for `cfg.benchmarks`, from `cfg.data_dir`."""
  data_dir = resolve_data_dir(cfg.data_dir)
  out = {}
  for name in benchmark_names(cfg.benchmarks):
    examples, _ = read_examples(str(storage.join(data_dir, BENCHMARK_FILES[name])), split="eval",
                                limit=cfg.num_problems or None)
    out[name] = examples
  return out


def _as_benchmarks(benchmarks, cfg) -> dict[str, list[Example]]:
  if benchmarks is None:
    return load_benchmarks(cfg)
  if isinstance(benchmarks, str) or (isinstance(benchmarks, (list, tuple)) and benchmarks
                                     and all(isinstance(b, str) for b in benchmarks)):
    c = ml_collections.ConfigDict(cfg.to_dict())
    c.benchmarks = benchmarks if isinstance(benchmarks, str) else ",".join(benchmarks)
    return load_benchmarks(c)
  if isinstance(benchmarks, Mapping):
    items = dict(benchmarks)
  elif benchmarks and isinstance(benchmarks[0], Example):
    items = {"eval": list(benchmarks)}
  else:
    raise TypeError("benchmarks: None, a name string, {name: [Example]} or [Example]")
  limit = cfg.num_problems or None
  out = {}
  for name, examples in items.items():
    examples = list(examples)[:limit]
    indices = [ex.index for ex in examples]
    if len(set(indices)) != len(indices):
      raise ValueError(f"benchmark {name!r}: Example.index must be unique (it keys the resumable store)")
    out[name] = examples
  return out


def _round_batch(batch: int, mesh) -> int:
  """Round up to a multiple of the mesh's batch-sharding axes (data x fsdp) so rows split evenly."""
  if mesh is None:
    return batch
  shards = int(mesh.shape.get("data", 1)) * int(mesh.shape.get("fsdp", 1))
  return -(-batch // shards) * shards


def evaluate(model: Any, tokenizer: Any, benchmarks=None, eval_cfg=None, out_dir: str | None = None, *,
             mesh=None, sampler=None, generate_fn: GenerateFn | None = None, pool=None,
             metadata: Mapping[str, Any] | None = None, log: Callable[[str], None] = print) -> dict:
  """Sample `num_samples` responses per problem, verify them and compute pass@k / maj@k per benchmark.

  Args:
    model: a `Transformer`, or its param state with `sampler=` (the trainer's). Unused with `generate_fn`.
    tokenizer: `simko_jax.models.Tokenizer` (chat template, encode/decode). Unused with `generate_fn`.
    benchmarks: None (= `eval_cfg.benchmarks` read from the eval data dir), names (a comma-separated
      string or a list), {name: [Example]} or one [Example] list (named "eval"). `Example.index` keys
      the store (unique per benchmark).
    eval_cfg: overrides of `default_eval_config()` (ConfigDict or dict); `num_problems` also cuts
      given Example lists.
    out_dir: results directory (default `eval_cfg.out_dir`); reused to resume.
    mesh: device mesh; the problem batch is rounded to a multiple of its data x fsdp size.
    generate_fn: replaces the sampler (see `generation.GenerateFn`).
    pool: a `VerifierPool` to reuse (default: one is started here and closed at the end).
    metadata: extra JSON-able fields stored under "metadata" in results.json (e.g. checkpoint, step).
  Returns: the results dict written to `out_dir/results.json` (see module docstring).
  """
  cfg = make_eval_config(eval_cfg)
  out_dir = out_dir or cfg.out_dir
  writer = _is_writer()
  if writer:
    storage.makedirs(out_dir)  # a local directory or a gs:// URL
  problem_sets = _as_benchmarks(benchmarks, cfg)
  batch = _round_batch(cfg.batch_problems, mesh)
  if generate_fn is None:
    generate_fn = sampler_generate_fn(model, tokenizer, cfg, sampler=sampler, mesh=mesh)
  own_pool = pool is None and writer
  if own_pool:
    from simko_jax.rewards.pool import VerifierPool
    pool = VerifierPool(num_workers=cfg.num_workers, timeout_s=cfg.timeout_s, default_source="math",
                        math_extraction=cfg.math_extraction)
  start = time.time()
  results: dict[str, dict] = {}
  sampled: dict[str, int] = {}
  try:
    for name, examples in problem_sets.items():
      bench_cfg = ml_collections.ConfigDict(cfg.to_dict())
      bench_cfg.num_samples = samples_for(cfg, name)  # the paper's 300 for AIME / AMC, else num_samples
      ks = k_values(bench_cfg.num_samples, cfg.ks)
      bench_dir = str(storage.join(out_dir, name))
      _shared(lambda: _check_sampling_settings(bench_dir, bench_cfg, batch))
      store = GenerationStore(bench_dir) if writer else None
      sampled[name] = _run_benchmark(name, examples, store, generate_fn, pool, bench_cfg, batch, log)
      if writer:
        results[name] = _summarize_benchmark(name, examples, store, ks, cfg, out_dir, log)
  finally:
    if own_pool:
      pool.close()
  output = None
  if writer:
    output = _write_results(out_dir, results, cfg, metadata,
                            {"sampled_problems": sampled, "wall_s": time.time() - start})
  return _shared(lambda: output)


def _summarize_benchmark(name, examples, store, ks, cfg, out_dir, log) -> dict:
  """pass@k / maj@k of one benchmark's stored records; writes `<name>/metrics.json`."""
  records = [store.records[ex.index] for ex in examples]
  metrics = summarize(records, ks, maj_method=cfg.maj_method, seed=cfg.seed)
  _write_json(storage.join(out_dir, name, "metrics.json"), metrics)
  log(f"[eval] {name}: {len(records)} problems, pass@1 {metrics['pass@k']['1']:.4f}, "
      f"pass@{ks[-1]} {metrics['pass@k'].get(str(ks[-1]), float('nan')):.4f}")
  return metrics


def _write_results(out_dir, results, cfg, metadata, run_info) -> dict:
  """results.json and results.md (see module docstring); returns the results dict."""
  output = {
      "benchmarks": results,
      "average": average_over(results),
      "paper_average": average_over(results, PAPER_BENCHMARKS),
      "run": run_info,
      "config": cfg.to_dict(),
      "metadata": dict(metadata or {}),
  }
  _write_json(storage.join(out_dir, "results.json"), output)
  storage.write_atomic(storage.join(out_dir, "results.md"), results_table({"run": output}) + "\n")
  return output


def _is_writer() -> bool:
  """Process 0 alone verifies, stores and writes; the other processes of a multi-process run only
  sample their rows (see `generation.sampler_generate_fn`)."""
  import jax
  return jax.process_index() == 0


def _shared(fn: Callable[[], Any]) -> Any:
  """`fn()` evaluated on process 0 and given to every process (its return value, or its ValueError
  raised everywhere), so all processes take the same decisions (what to sample, whether to stop)."""
  import jax
  if jax.process_count() == 1:
    return fn()
  from simko_jax.train.distributed import gather_json
  value, error = None, None
  if jax.process_index() == 0:
    try:
      value = fn()
    except ValueError as err:
      error = str(err)
  value, error = gather_json([value, error])[0]
  if error is not None:
    raise ValueError(error)
  return value


def _run_benchmark(name: str, examples: Sequence[Example], store: GenerationStore | None,
                   generate_fn: GenerateFn, pool, cfg, batch: int, log) -> int:
  """Sample and store every unfinished problem of one benchmark; returns how many were sampled.
  `store` is None on the processes that only sample (multi-process runs): process 0 decides which
  batches to sample and every process samples exactly those."""
  from tqdm.auto import tqdm
  batches = [list(examples[i:i + batch]) for i in range(0, len(examples), batch)]
  todo = _shared(lambda: [i for i, b in enumerate(batches) if any(not store.done(ex.index) for ex in b)])
  remaining = sum(1 for i in todo for ex in batches[i] if store is None or not store.done(ex.index))
  if store is not None and store.num_dropped_partial:
    log(f"[eval] {name}: dropped a partial trailing line of {store.path} (interrupted write)")
  if store is not None and len(examples) - remaining:
    log(f"[eval] {name}: resuming, {len(examples) - remaining}/{len(examples)} problems already done")
  bar = tqdm(total=remaining, desc=name, unit="problem", dynamic_ncols=True,
             disable=not cfg.progress or remaining == 0 or store is None)
  num_sampled = 0
  try:
    for batch_index in todo:
      problems = batches[batch_index]
      padded = problems + [problems[-1]] * (batch - len(problems))
      generations = generate_fn([ex.prompt for ex in padded], batch_seed(cfg.seed, name, batch_index),
                                n=cfg.num_samples)[:len(problems)]
      if store is None:
        continue
      fresh = [(ex, g) for ex, g in zip(problems, generations) if not store.done(ex.index)]
      for _, gens in fresh:
        if len(gens) != cfg.num_samples:
          raise ValueError(f"generate_fn returned {len(gens)} samples, expected {cfg.num_samples}")
      records = verify_batch(pool, [ex for ex, _ in fresh], [g for _, g in fresh],
                             cfg.truncated_is_wrong, cfg.math_extraction)
      store.append(records)
      num_sampled += len(records)
      bar.update(len(records))
  finally:
    bar.close()
  return num_sampled


# Fields that decide what is sampled for a problem; a resumed run must match them exactly.
SAMPLING_FIELDS = ("num_samples", "temperature", "top_p", "top_k", "max_new_tokens", "max_prompt_len",
                   "chat", "system_prompt", "prompt_suffix", "prompt_template", "seed")
# Fields added later: a stored sampling.json without them was written under these values.
_SAMPLING_DEFAULTS = {"prompt_template": "chat"}


def _check_sampling_settings(directory: str, cfg, batch: int) -> None:
  """Write `<benchmark>/sampling.json` on the first run; refuse to resume under different settings
  (mixing samples drawn under different settings would silently corrupt the metrics)."""
  settings = {f: cfg[f] for f in SAMPLING_FIELDS}
  settings["batch_problems_effective"] = batch  # batch boundaries fix the per-batch seeds
  path = storage.join(directory, "sampling.json")
  if storage.isfile(path):
    stored = json.loads(storage.read_text(path))
    stored = {**_SAMPLING_DEFAULTS, **stored}
    diff = {k: (stored.get(k), v) for k, v in settings.items() if stored.get(k) != v}
    if diff:
      raise ValueError(f"{directory} holds samples drawn with other settings {{field: (stored, now)}}: "
                       f"{diff}. Use another out_dir, or the stored settings to resume.")
    return
  storage.makedirs(directory)
  _write_json(path, settings)


def _write_json(path, obj) -> None:
  storage.write_atomic(path, json.dumps(obj, indent=2, sort_keys=False))
