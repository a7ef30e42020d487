"""`python -m simko_jax.main --config <x> --dry_run`: will this config fit its target, and how many FLOPs?

Nothing is allocated and no checkpoint is read. Method (decided for CPU-only machines):
  * fake devices: `--xla_force_host_platform_device_count=<config.target.num_devices>` is put in
    XLA_FLAGS and the platform forced to CPU *before* JAX starts, and the run's real (data, fsdp, tensor)
    mesh is built over them. (An `AbstractMesh` would allow `.lower()` but not `.compile()`, and only a
    compiled program has `memory_analysis()`.)
  * the architecture comes from `simko_jax.models.presets` (checkpoint path or Hub id matched by its
    last component), a local HF dir / GGUF file's own config, a Hub id's config.json already in the
    Hub cache (never downloaded), or `model.random_preset`;
  * params: `nnx.eval_shape`; their shardings: the model's logical-axis rules on that mesh; optimizer
    state: `tx.init` jitted and compiled on abstract sharded params (its output shardings);
  * the trainer's own `jit_train_step` is lowered AOT on abstract inputs of one optimizer update and
    compiled for XLA:CPU; `compiled.memory_analysis()` / `cost_analysis()` are reported next to
    analytic numbers. XLA:CPU is not the target compiler (fusion, bf16 handling and layouts differ), and
    cuDNN attention cannot be compiled on a CPU, so the compiled program uses XLA attention, which
    materialises [rows, heads, L, L] scores: treat the compiled temp size as an upper-bound sanity check.
  * the sharding plan is checked while compiling (`parallel.spmd_check`): every tensor XLA reports as an
    "[SPMD] Involuntary full rematerialization" (re-sharded only by replicating it on every device, every
    use) gets a "FAILED sharding plan" line naming its per-device shape and the two HLO shardings, and
    `main` raises `ShardingPlanError` (the CLI prints one "error:" line and exits 1), so CI catches it.

Per-device quantities (bytes, "/shard" = divided by the product of the mesh axes the dimension is split
over, exactly as the array's `NamedSharding.shard_shape` gives):
  params          sum over params of prod(shard_shape) x itemsize(param_dtype)
  optimizer       the same over the optax state (AdamW: mu and nu like the params, plus a step count)
  grad accum      = params (the micro-batch scan carries one gradient per param, param dtype)
  activations     (analytic) t x layers x saved(remat) x itemsize(dtype) + one layer's attention
                  scores, with t = micro-batch tokens per device = micro_rows x L / (data x fsdp) and
                  saved per token per layer: "full"/"nothing_saveable": D; "dots*": 3D + (N+2K)H/tp + 2F/tp;
                  "none": 8D + (N+2K)H/tp + 4F/tp + 2·(N/tp)·L·4/itemsize (scores and probs, fp32).
                  Attention working set (xla impl only; 0 for cudnn): 2 x rows x N/tp x L x L x 4.
  logits chunk    loss_chunk_size x V/tp x 4 bytes x 3 (logits, softmax, their gradient; fp32)
  KV cache        2 x layers x rows x S x K/tp x H x itemsize(dtype), rows = (sample_chunk_prompts or
                  prompts_per_step) x G x processes / (data x fsdp) (one sampler call's responses),
                  S = round_up(max_prompt_len, prompt_bucket) + round_up(max_new_tokens, 64)
  train peak      params + optimizer + grad accum + activations + logits chunk
  rollout peak    params + optimizer + KV cache + rows x V/tp x 4 (one step's logits)
  FLOPs (analytic) 6 x N_matmul x tokens per update (N_matmul: every weight matrix incl. the LM head,
                  not the embedding lookup), x updates per RL step; plus 2 x N_matmul per old-log-prob
                  token when the step is off-policy. XLA's `cost_analysis()` counts each while-loop
                  (scan) body once, so its number is per layer and per micro-batch, not per step.
"""

from __future__ import annotations

import os
import re
from typing import Any

HBM_GB = {"cpu": 0.0, "h100": 80.0, "tpu_v4": 32.0, "tpu_v5e": 16.0, "tpu_v5p": 95.0}
GEN_BUCKET = 64  # Sampler's default gen_bucket


def prepare_devices(num_devices: int) -> None:
  """Fake `num_devices` CPU devices. Must run before JAX starts a backend (else it checks the count)."""
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
  os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={num_devices}".strip()
  os.environ["JAX_PLATFORMS"] = "cpu"
  from simko_jax.parallel.spmd_check import enable_xla_warnings
  enable_xla_warnings()
  import jax
  try:
    jax.config.update("jax_platforms", "cpu")
  except Exception:  # noqa: BLE001 - backend already up; the count check below decides
    pass
  if jax.device_count() < num_devices:
    raise ValueError(f"--dry_run needs {num_devices} fake devices but JAX already started with "
                     f"{jax.device_count()}; run it in a fresh process")


def model_config(model_cfg, *, attention_impl: str | None = None):
  """`ModelConfig` of `config.model` without reading weights (presets / local config / random preset)."""
  import jax.numpy as jnp

  from simko_jax.config import ConfigError
  from simko_jax.models import hub
  from simko_jax.models.config import PRESETS, ModelConfig
  from simko_jax.models.presets import hf_preset, preset_for
  over = dict(dtype=jnp.dtype(model_cfg.dtype), param_dtype=jnp.dtype(model_cfg.param_dtype),
              remat=model_cfg.remat, attention_impl=attention_impl or model_cfg.attention_impl)
  ckpt = model_cfg.checkpoint
  if ckpt == "random":
    return PRESETS[model_cfg.random_preset](**over)
  if preset_for(ckpt):
    return ModelConfig.from_hf_config(hf_preset(preset_for(ckpt)), **over)
  from simko_jax import storage
  if storage.isfile(storage.join(ckpt, "config.json")):  # a local dir or a gs:// URL
    from simko_jax.models.hf_io import read_hf_config
    return ModelConfig.from_hf_config(read_hf_config(ckpt), **over)
  hub_id = hub.parse_hub_id(ckpt)
  cached = hub_id and hub.cached_file(hub_id, "config.json", model_cfg.get("hub_cache_dir") or None)
  if cached:
    from simko_jax.models.hf_io import read_hf_config
    return ModelConfig.from_hf_config(read_hf_config(os.path.dirname(cached)), **over)
  if ckpt == "smollm2" or ckpt.endswith(".gguf"):
    from simko_jax.models.gguf_io import gguf_config, open_gguf
    from simko_jax.train.model_source import resolve_checkpoint
    return gguf_config(open_gguf(resolve_checkpoint(ckpt)), **over)
  raise ConfigError(f"config.model.checkpoint = {ckpt!r}: --dry_run needs its architecture; add it to "
                    "simko_jax/models/presets.py, point to a directory with its config.json, or (Hub id) "
                    "download it once so its config.json is in the Hub cache")


def per_device_bytes(tree) -> int:
  """Bytes one device holds of a pytree of `ShapeDtypeStruct`s / arrays with `.sharding`."""
  import jax
  import numpy as np
  total = 0
  for x in jax.tree.leaves(tree):
    shape = x.sharding.shard_shape(x.shape) if x.shape else ()
    total += int(np.prod(shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize
  return total


def round_up(x: int, m: int) -> int:
  return max(m, -(-x // m) * m)


def analyze(cfg, *, compile: bool = True) -> dict[str, Any]:
  """Builds everything abstractly on the current devices and returns the report (see module doc)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx
  from jax.sharding import NamedSharding, PartitionSpec

  from simko_jax.config import validate
  from simko_jax.models.transformer import Transformer
  from simko_jax.parallel import make_mesh, model_shardings, opt_state_shardings
  from simko_jax.parallel.spmd_check import compile_checked
  from simko_jax.train.step import (Batch, LossHParams, batch_sharding, is_on_policy, jit_train_step,
                                    make_optimizer)

  t, a, r = cfg.target, cfg.algo, cfg.rollout
  num_devices = t.num_devices or jax.device_count()
  validate(cfg, num_devices=num_devices)
  devices = jax.devices()[:num_devices]
  # The mesh `setup.build_mesh` would build, over exactly `num_devices` (fake) devices.
  fixed = cfg.train.mesh_fsdp * cfg.train.mesh_tensor
  data = num_devices // fixed if cfg.train.mesh_data == -1 else cfg.train.mesh_data
  mesh = make_mesh(data, cfg.train.mesh_fsdp, cfg.train.mesh_tensor, devices=devices)
  compile_impl = "xla" if cfg.model.attention_impl == "cudnn" else None
  mcfg = model_config(cfg.model, attention_impl=compile_impl)
  abstract = nnx.eval_shape(lambda: Transformer(mcfg, rngs=nnx.Rngs(0)))
  graphdef, abs_params = nnx.split(abstract)
  param_sh = model_shardings(abstract, mesh)
  sds = lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
  params = jax.tree.map(sds, abs_params, param_sh)

  procs = t.num_processes
  updates = a.ppo_epochs * (r.prompts_per_step // a.mini_batch_prompts)
  tx, _ = make_optimizer(cfg.optim, max(cfg.train.steps, 1) * updates)
  opt_sh = opt_state_shardings(tx, params, param_sh, mesh)   # mu / nu sharded like the params
  opt_state = jax.tree.map(sds, jax.eval_shape(tx.init, params), opt_sh)
  with jax.set_mesh(mesh):   # what a bare `jax.jit(tx.init)(params)` would place (for the report)
    bare = jax.jit(tx.init).lower(params).compile().output_shardings
  replicated = NamedSharding(mesh, PartitionSpec())
  bare_opt = jax.tree.map(lambda x, s: sds(x, s if isinstance(s, NamedSharding) else replicated),
                          jax.eval_shape(tx.init, params), bare)

  g = r.group_size
  prompt_len = round_up(cfg.data.max_prompt_len, cfg.data.prompt_bucket)
  resp = r.max_new_tokens
  seq = prompt_len + resp
  rows_update = a.mini_batch_prompts * g * procs
  micro = a.micro_batch_size * procs
  m = rows_update // micro
  row_sh = batch_sharding(mesh, 2)
  arr = lambda shape, dt: jax.ShapeDtypeStruct(shape, dt, sharding=row_sh)
  batch = Batch(arr((m, micro, seq), jnp.int32), arr((m, micro, seq), jnp.int32),
                arr((m, micro, seq), jnp.int32), arr((m, micro, resp), jnp.float32),
                arr((m, micro, resp), jnp.float32), arr((m, micro, resp), jnp.float32),
                arr((m, micro), jnp.float32))
  loss_cfg = LossHParams.from_config(cfg)
  step = jit_train_step(graphdef, tx, loss_cfg, param_sh, opt_sh, mesh)
  # Traced under the mesh so the model's activation constraints (`parallel.constrain`) apply; without
  # it they are no-ops and XLA:CPU's temporaries for the 7B H100 config grow from ~67 GB to ~367 GB.
  with jax.set_mesh(mesh):
    lowered = step.lower(params, opt_state, batch)

  sizes = dict(mesh.shape)
  tp, rows_axes = sizes["tensor"], sizes["data"] * sizes["fsdp"]
  itemsize = jnp.dtype(mcfg.dtype).itemsize
  d, n, k, h, f, v, nl = (mcfg.hidden_size, mcfg.num_heads, mcfg.num_kv_heads, mcfg.head_dim,
                          mcfg.intermediate_size, mcfg.vocab_size, mcfg.num_layers)
  div = lambda x: x / tp if x % tp == 0 else x
  tok_dev = micro * seq / rows_axes
  rows_dev = micro / rows_axes
  if mcfg.remat in ("full", "nothing_saveable"):
    saved = d * itemsize
  elif mcfg.remat.startswith("dots") or mcfg.remat == "everything_saveable":
    saved = (3 * d + div(n) * h + 2 * div(k) * h + 2 * div(f)) * itemsize
  else:
    saved = (8 * d + div(n) * h + 2 * div(k) * h + 4 * div(f)) * itemsize + 2 * div(n) * seq * 4
  attn_ws = 0 if cfg.model.attention_impl == "cudnn" else 2 * rows_dev * div(n) * seq * seq * 4
  activations = tok_dev * nl * saved + attn_ws
  logits_chunk = a.loss_chunk_size * div(v) * 4 * 3
  p_bytes, o_bytes = per_device_bytes(params), per_device_bytes(opt_state)
  sample_rows = (r.sample_chunk_prompts or r.prompts_per_step) * g * procs / rows_axes
  cache_len = prompt_len + round_up(resp, GEN_BUCKET)
  kv = 2 * nl * sample_rows * cache_len * div(k) * h * itemsize
  rollout_logits = sample_rows * div(v) * 4
  train_peak = p_bytes + o_bytes + p_bytes + activations + logits_chunk
  rollout_peak = p_bytes + o_bytes + kv + rollout_logits

  n_total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abs_params))
  n_matmul = n_total - v * d * (0 if mcfg.tie_word_embeddings else 1)  # the lookup table is no matmul
  tokens_update = rows_update * seq
  flops_update = 6 * n_matmul * tokens_update
  flops_step = flops_update * updates + (0 if is_on_policy(cfg) else 2 * n_matmul * tokens_update * (
      r.prompts_per_step // a.mini_batch_prompts))
  hbm = t.hbm_gb or HBM_GB[t.name]
  report = dict(
      target=t.name, num_devices=num_devices, num_processes=procs, hbm_gb=hbm,
      mesh=tuple(mesh.shape.items()),
      model=f"{mcfg.architecture} " + (f"{n_total / 1e9:.3f}B" if n_total >= 1e8 else f"{n_total / 1e6:.3f}M")
      + " params",
      num_params=n_total, seq_len=seq, micro_rows=micro, micro_batches=m, updates_per_step=updates,
      params_bytes=p_bytes, opt_bytes=o_bytes, opt_bytes_bare_init=per_device_bytes(bare_opt), grad_bytes=p_bytes, activation_bytes=activations,
      logits_chunk_bytes=logits_chunk, kv_cache_bytes=kv, rollout_logits_bytes=rollout_logits,
      train_peak_bytes=train_peak, rollout_peak_bytes=rollout_peak,
      flops_update_analytic=flops_update, flops_step_analytic=flops_step,
      flops_update_per_device_analytic=flops_update / num_devices,
      attention_compiled_as=compile_impl or mcfg.attention_impl)
  if compile:
    compiled, remats = compile_checked(lowered)
    report["spmd_remats"] = [r.describe() for r in remats]
    mem = compiled.memory_analysis()
    if mem is not None:
      report.update(compiled_argument_bytes=mem.argument_size_in_bytes,
                    compiled_output_bytes=mem.output_size_in_bytes,
                    compiled_alias_bytes=mem.alias_size_in_bytes,
                    compiled_temp_bytes=mem.temp_size_in_bytes)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost and "flops" in cost:
      report["compiled_flops_per_device"] = float(cost["flops"])
  peak = max(train_peak, rollout_peak, report.get("compiled_argument_bytes", 0) +
             report.get("compiled_temp_bytes", 0))
  report["warnings"] = []
  if hbm:
    for name, value in (("training", train_peak), ("rollout (sampler KV cache)", rollout_peak)):
      if value > hbm * 1e9:
        report["warnings"].append(
            f"WARNING: {name} needs ~{value / 1e9:.1f} GB per device, more than the {hbm:g} GB of "
            f"one {t.name} chip")
  report["fits"] = not report["warnings"]
  report["peak_bytes"] = peak
  return report


def _gb(x: float) -> str:
  return f"{x / 1e9:10.3f} GB"


def format_report(rep: dict[str, Any]) -> str:
  mesh = " x ".join(f"{k}={v}" for k, v in rep["mesh"])
  lines = [
      f"dry run: {rep['model']} on {rep['num_devices']} x {rep['target']} "
      f"({rep['num_processes']} process(es), {rep['hbm_gb']:g} GB HBM per chip); mesh {mesh}",
      f"  one update: {rep['micro_batches']} micro-batches x {rep['micro_rows']} rows x "
      f"{rep['seq_len']} tokens; {rep['updates_per_step']} update(s) per RL step",
      "  per-device memory                     analytic",
      f"    parameters                      {_gb(rep['params_bytes'])}",
      f"    optimizer state                 {_gb(rep['opt_bytes'])}"
      + (f"   (a bare jit(tx.init) would place {rep['opt_bytes_bare_init'] / 1e9:.1f} GB)"
         if rep["opt_bytes_bare_init"] > 1.01 * rep["opt_bytes"] else ""),
      f"    gradient accumulator            {_gb(rep['grad_bytes'])}",
      f"    activations (remat, 1 micro)    {_gb(rep['activation_bytes'])}",
      f"    logits chunk (fused loss)       {_gb(rep['logits_chunk_bytes'])}",
      f"    sampler KV cache                {_gb(rep['kv_cache_bytes'])}",
      f"    = training peak                 {_gb(rep['train_peak_bytes'])}",
      f"    = rollout peak                  {_gb(rep['rollout_peak_bytes'])}",
  ]
  if "compiled_temp_bytes" in rep:
    lines += [
        f"  compiled train_step (XLA:CPU, {rep['attention_compiled_as']} attention):",
        f"    arguments                       {_gb(rep['compiled_argument_bytes'])}",
        f"    outputs (aliased {rep['compiled_alias_bytes'] / 1e9:.3f} GB)      "
        f"{_gb(rep['compiled_output_bytes'])}",
        f"    temporaries                     {_gb(rep['compiled_temp_bytes'])}"]
  lines += [
      "  FLOPs",
      f"    per update, analytic 6*N*tokens  {rep['flops_update_analytic']:.3e} "
      f"({rep['flops_update_per_device_analytic']:.3e} per device)",
      f"    per RL step, analytic           {rep['flops_step_analytic']:.3e}"]
  if "compiled_flops_per_device" in rep:
    lines.append(f"    XLA cost_analysis per device    {rep['compiled_flops_per_device']:.3e} "
                 "(loop bodies counted once)")
  lines += [f"  FAILED sharding plan: XLA replicates {r} on every device, every use "
            "(involuntary full rematerialization)" for r in rep.get("spmd_remats", [])]
  analytic = max(rep["train_peak_bytes"], rep["rollout_peak_bytes"])
  lines += rep["warnings"] or [f"  fits: yes (analytic peak {analytic / 1e9:.1f} GB"
                               + (f" of {rep['hbm_gb']:g} GB)" if rep["hbm_gb"] else ")")]
  if rep["hbm_gb"] and rep["peak_bytes"] > rep["hbm_gb"] * 1e9 and rep["peak_bytes"] > analytic:
    # XLA:CPU's plan (XLA attention, CPU dot layouts) is an upper bound, not the accelerator's plan.
    lines.append(f"  note: XLA:CPU's compiled plan needs {rep['peak_bytes'] / 1e9:.1f} GB, above the chip: "
                 "an upper bound (CPU attention and layouts); check the first step on the accelerator")
  return "\n".join(lines)


def main(cfg) -> dict[str, Any]:
  """Prepares fake devices for `cfg.target`, analyses, prints the table; returns the report."""
  n = cfg.target.num_devices or int(os.environ.get("SIMKO_DRY_RUN_DEVICES", "0")) or 1
  prepare_devices(n)
  report = analyze(cfg)
  print(format_report(report), flush=True)
  remats = report.get("spmd_remats", [])
  if remats:
    raise ShardingPlanError(
        f"the train step's sharding plan makes XLA replicate {len(remats)} tensor(s) on every device "
        f"to re-shard them (first: {remats[0]}); make the batch, activation and parameter shardings "
        "agree (simko_jax/parallel/rules.py, the model's `constrain` calls; see launch/README.md)")
  return report


class ShardingPlanError(ValueError):
  """The compiled train step needs an involuntary full rematerialization (see `parallel.spmd_check`)."""

