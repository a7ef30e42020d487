"""Accelerator benchmark: decode and train-step speed, MFU and HBM-bandwidth use, vs a PyTorch peer.

  python benchmarks/accelerator.py --out /tmp/accel.json              # Qwen2.5-0.5B shape, bf16, GPU
  python benchmarks/accelerator.py --quick --out /tmp/accel.json      # tiny shapes: a CPU smoke run

Run by `benchmarks/accelerator_check.sh` on a lent H100/H200 (see benchmarks/README.md for results).
Model: the Qwen2.5-0.5B architecture (`models.presets`), random weights, bf16 compute.

  ceilings  measured here: bf16 matmul FLOP/s ([n, n] x [n, n], median of 10) and device copy
            bandwidth (y = 2x over a large bf16 array; bytes read + written); datasheet peaks from
            `simko_jax.metrics.flops.PEAKS` when the device is known.
  decode    `Sampler` (bf16 params and KV cache, temperature 1, no stop ids) on --batch prompts of
            --prompt tokens. One compiled program serves both timings: max_new_tokens = --new and = 1
            (it is a traced value, gen_bucket = --new), so decode step time = (t_new - t_1) / (new - 1)
            and the prefill cancels. HBM use = `decode_step_bytes` (weights + K/V cache at the mean
            context) / step time / peak bandwidth.
  train     `train.step.jit_train_step` (SimKO, on-policy, fp32 master params + AdamW, bf16 compute,
            fused chunked LM head) on --train_seqs sequences of --train_prompt + --train_response
            tokens in --micro micro-batches; median of --repeats warm steps. MFU =
            `train_step_flops` / step time / peak FLOP/s. XLA's compiled memory plan is reported too.
            GRPO on the same batch gives the SimKO/GRPO time ratio.
  peer      transformers `generate` (PyTorch eager, dynamic KV cache, sdpa attention) and a PyTorch
            train step (forward + CE on response tokens + backward + AdamW, bf16 autocast) of the same
            architecture, when torch with CUDA is importable (skipped otherwise). Run it in its own
            process (`--parts peer`, JAX_PLATFORMS=cpu) so JAX's GPU memory pool does not starve it,
            then `--parts '' --merge a.json b.json` prints the joint table.
Prints a table and writes one JSON summary to --out.

--profile DIR: after its timings, decode traces one 16-token sampling call (the same compiled program)
and train one step under `jax.profiler.trace(DIR/<part>)`. Read the traces on any machine with `xprof`
(`benchmarks/profile_summary.py`: per-HLO-op device time, occurrences and what bounds each op).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from simko_jax.metrics import flops as F  # noqa: E402

QUICK = dict(batch=8, prompt=16, new=16, train_seqs=4, train_prompt=8, train_response=24, micro=2,
             matmul_n=512, copy_mib=16)


def model_config(quick: bool, attention: str):
  from simko_jax.models import ModelConfig
  from simko_jax.models.presets import hf_preset
  hf = hf_preset("Qwen2.5-0.5B")
  if quick:
    hf.update(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2)
  return ModelConfig.from_hf_config(hf, dtype=jnp.bfloat16, param_dtype=jnp.float32,
                                    attention_impl=attention)


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return statistics.median(times), times


def profile(out_dir: str | None, fn) -> None:
  """Run fn once under `jax.profiler.trace(out_dir)` (nothing if out_dir is None)."""
  if out_dir:
    with jax.profiler.trace(out_dir):
      jax.block_until_ready(fn())


def ceilings(n: int, copy_mib: int) -> dict:
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
  dot = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.bfloat16))
  dot(a, b).block_until_ready()
  t_mm, _ = median_time(lambda: dot(a, b), 10)
  x = jax.random.normal(jax.random.key(2), (copy_mib * 2 ** 19,), jnp.bfloat16)  # copy_mib MiB
  scale = jax.jit(lambda v: v * 2)
  scale(x).block_until_ready()
  t_cp, _ = median_time(lambda: scale(x), 10)
  return dict(matmul_flops=2 * n ** 3 / t_mm, copy_bytes_per_s=2 * x.nbytes / t_cp, matmul_n=n,
              copy_mib=copy_mib)


def bench_decode(cfg, batch: int, prompt: int, new: int, repeats: int, profile_dir: str | None = None) -> dict:
  from flax import nnx

  from simko_jax.models import Transformer
  from simko_jax.sampling import Sampler
  model = Transformer(cfg.replace(param_dtype=jnp.bfloat16), rngs=nnx.Rngs(0))
  sampler, state = Sampler.from_model(model, stop_ids=(), prompt_bucket=prompt, gen_bucket=new)
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, cfg.vocab_size, (batch, prompt)).astype(np.int32)
  mask = np.ones_like(tokens)
  kw = dict(n=1, temperature=1.0, top_p=1.0, top_k=0)
  t = time.perf_counter()
  sampler.lower(state, tokens, mask, jax.random.key(0), max_new_tokens=new, **kw).compile()
  compile_s = time.perf_counter() - t

  def call(m):
    return lambda: sampler.sample(state, tokens, mask, jax.random.key(1), max_new_tokens=m, **kw).tokens
  jax.block_until_ready(call(new)())
  t_full, all_full = median_time(call(new), repeats)
  t_one, _ = median_time(call(1), repeats)
  step_s = (t_full - t_one) / (new - 1)
  profile(profile_dir, call(min(new, 16)))
  context = prompt + new / 2
  step_flops = F.decode_step_flops(cfg, batch, context)
  step_bytes = F.decode_step_bytes(cfg, batch, context, weight_bytes=2, cache_bytes=2)
  return dict(batch=batch, prompt=prompt, new_tokens=new, compile_s=round(compile_s, 2),
              compilations=sampler.num_compilations, call_s=round(t_full, 4),
              call_s_all=[round(x, 4) for x in all_full], prefill_plus_one_s=round(t_one, 4),
              decode_step_ms=round(1e3 * step_s, 4), decode_tokens_per_s=round(batch / step_s, 1),
              end_to_end_tokens_per_s=round(batch * new / t_full, 1),
              step_flops=step_flops, step_bytes=step_bytes)


def bench_train(cfg, seqs: int, prompt: int, response: int, micro: int, repeats: int, method: str,
                profile_dir: str | None = None) -> dict:
  from flax import nnx

  from simko_jax.hparams import OptimizerHParams
  from simko_jax.models import Transformer
  from simko_jax.parallel import make_mesh, model_shardings
  from simko_jax.train.step import Batch, LossHParams, jit_train_step, make_optimizer, shard_batch
  mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
  tx, _ = make_optimizer(OptimizerHParams(), 100)
  loss_cfg = LossHParams(method=method, on_policy=True, chunk_size=4096)
  with jax.set_mesh(mesh):
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    p_sh = model_shardings(model, mesh)
    params = jax.device_put(params, p_sh)
    opt_state = jax.jit(tx.init)(params)
    o_sh = jax.tree.map(lambda x: x.sharding, opt_state)
    step = jit_train_step(graphdef, tx, loss_cfg, p_sh, o_sh, mesh)
    rng = np.random.default_rng(0)
    t = prompt + response
    mb = seqs // micro
    batch = Batch(
        tokens=rng.integers(1, cfg.vocab_size, (micro, mb, t)).astype(np.int32),
        attention_mask=np.ones((micro, mb, t), np.int32),
        positions=np.broadcast_to(np.arange(t, dtype=np.int32), (micro, mb, t)).copy(),
        loss_mask=np.ones((micro, mb, response), np.float32),
        old_logprobs=np.zeros((micro, mb, response), np.float32),
        ref_logprobs=np.zeros((micro, mb, response), np.float32),
        advantages=rng.choice([-1.0, 1.0], (micro, mb)).astype(np.float32))
    batch = shard_batch(batch, mesh)
    c0 = time.perf_counter()
    compiled = step.lower(params, opt_state, batch).compile()
    compile_s = time.perf_counter() - c0
    mem = compiled.memory_analysis()
    state = {"p": params, "o": opt_state}

    def one():
      state["p"], state["o"], metrics = compiled(state["p"], state["o"], batch)
      return metrics["loss"]
    jax.block_until_ready(one())
    step_s, times = median_time(one, repeats)
    profile(profile_dir, one)
  flops = F.train_step_flops(cfg, seqs, prompt, response)
  plan = None
  if mem is not None:
    plan = sum(getattr(mem, f, 0) for f in ("argument_size_in_bytes", "output_size_in_bytes",
                                             "temp_size_in_bytes")) - getattr(mem, "alias_size_in_bytes", 0)
  return dict(method=method, seqs=seqs, prompt=prompt, response=response, micro=micro,
              compile_s=round(compile_s, 2), step_s=round(step_s, 4), step_s_all=[round(x, 4) for x in times],
              train_tokens_per_s=round(seqs * t / step_s, 1), step_flops=flops,
              xla_memory_plan_gib=None if plan is None else round(plan / 2 ** 30, 2))


def bench_torch_peer(hf: dict, batch: int, prompt: int, new: int, seqs: int, tp: int, tr: int,
                     micro: int, repeats: int, allow_cpu: bool = False) -> dict:
  import torch
  import transformers
  if not torch.cuda.is_available() and not allow_cpu:
    return {"skipped": "torch has no CUDA device"}
  device = "cuda" if torch.cuda.is_available() else "cpu"
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  torch.manual_seed(0)
  conf = transformers.Qwen2Config(**{k: v for k, v in hf.items() if k not in ("architectures",)})
  model = transformers.Qwen2ForCausalLM(conf).to(device, torch.bfloat16).eval()
  ids = torch.randint(1, conf.vocab_size, (batch, prompt), device=device)
  kw = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
            use_cache=True, pad_token_id=0)

  def gen(m):
    def run():
      with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=m, min_new_tokens=m, **kw)
      sync()
      return out
    return run
  gen(4)()
  timed = lambda fn: statistics.median([(lambda t0: (fn(), time.perf_counter() - t0)[1])(time.perf_counter())
                                        for _ in range(repeats)])
  t_full, t_one = timed(gen(new)), timed(gen(1))
  step_s = (t_full - t_one) / (new - 1)
  out = dict(generate=dict(call_s=round(t_full, 4), decode_step_ms=round(1e3 * step_s, 4),
                           decode_tokens_per_s=round(batch / step_s, 1),
                           end_to_end_tokens_per_s=round(batch * new / t_full, 1)),
             torch=torch.__version__, transformers=transformers.__version__)
  # Train step: fp32 master weights, bf16 autocast, CE on response tokens, AdamW; micro-batched.
  train_model = transformers.Qwen2ForCausalLM(conf).to(device).train()
  opt = torch.optim.AdamW(train_model.parameters(), lr=1e-6, fused=device == "cuda")
  tokens = torch.randint(1, conf.vocab_size, (seqs, tp + tr), device=device)
  labels = tokens.clone()
  labels[:, :tp] = -100

  def train_step():
    for i in range(micro):
      sl = slice(i * seqs // micro, (i + 1) * seqs // micro)
      with torch.autocast(device, dtype=torch.bfloat16):
        loss = train_model(input_ids=tokens[sl], labels=labels[sl]).loss / micro
      loss.backward()
    torch.nn.utils.clip_grad_norm_(train_model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync()
  train_step()
  peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device == "cuda" else float("nan")
  out["train"] = dict(step_s=round(timed(train_step), 4), peak_gib=round(peak, 2), device=device)
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--quick", action="store_true", help="tiny model and sizes (CPU smoke test)")
  ap.add_argument("--attention", default="auto", choices=("auto", "cudnn", "xla", "jax"),
                  help="train-forward attention; auto = cudnn on GPU, xla elsewhere")
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--prompt", type=int, default=64)
  ap.add_argument("--new", type=int, default=128)
  ap.add_argument("--train_seqs", type=int, default=64)
  ap.add_argument("--train_prompt", type=int, default=128)
  ap.add_argument("--train_response", type=int, default=512)
  ap.add_argument("--micro", type=int, default=4)
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--parts", default="ceilings,decode,train,grpo,peer",
                  help="comma list of ceilings,decode,train,grpo,peer ('' for none)")
  ap.add_argument("--merge", nargs="*", default=[], help="JSON summaries of other runs to merge in")
  ap.add_argument("--out", default="accelerator.json")
  ap.add_argument("--profile", default=None, help="trace decode and the SimKO train step into this folder")
  args = ap.parse_args()
  if args.quick:
    vars(args).update(QUICK)
  dev = jax.devices()[0]
  gpu = dev.platform == "gpu"
  attention = args.attention if args.attention != "auto" else ("cudnn" if gpu else "xla")
  peaks = F.chip_peaks(dev.device_kind)
  summary = dict(device=dev.device_kind, platform=dev.platform, jax=jax.__version__,
                 datasheet_peaks=dict(bf16_flops=peaks[0], hbm_bytes_per_s=peaks[1]) if peaks else None,
                 attention=attention, args=vars(args), errors={})
  cfg = model_config(args.quick, attention)
  pc = F.param_counts(cfg)
  summary["model"] = dict(params_total=pc.total, params_body=pc.body, params_head=pc.head,
                          layers=cfg.num_layers, hidden=cfg.hidden_size, vocab=cfg.vocab_size)
  parts = args.parts.split(",")

  def part(name, fn):
    if name not in parts:
      return
    t = time.perf_counter()
    try:
      summary[name] = fn()
    except Exception as e:  # one failed part must not lose the others' numbers
      summary["errors"][name] = f"{type(e).__name__}: {e}"[:2000]
      traceback.print_exc()
    print(f"[{name}] {time.perf_counter() - t:.1f} s: {json.dumps(summary.get(name))}", flush=True)
    with open(args.out, "w") as f:
      json.dump(summary, f, indent=1)

  part("ceilings", lambda: ceilings(getattr(args, "matmul_n", 8192), getattr(args, "copy_mib", 2048)))
  trace_dir = lambda name: os.path.join(args.profile, name) if args.profile else None
  part("decode", lambda: bench_decode(cfg, args.batch, args.prompt, args.new, args.repeats, trace_dir("decode")))
  def train(method):
    try:
      return bench_train(cfg, args.train_seqs, args.train_prompt, args.train_response, args.micro,
                         args.repeats, method, trace_dir("train") if method == "simko" else None)
    except Exception as e:  # e.g. a cuDNN attention the GPU/JAX build rejects: measure with XLA's
      if cfg.attention_impl == "xla":
        raise
      summary["errors"][f"{method}_{cfg.attention_impl}"] = f"{type(e).__name__}: {e}"[:2000]
      traceback.print_exc()
      result = bench_train(cfg.replace(attention_impl="xla"), args.train_seqs, args.train_prompt,
                           args.train_response, args.micro, args.repeats, method)
      return {**result, "attention": "xla (fallback)"}
  part("train", lambda: train("simko"))
  part("grpo", lambda: train("grpo"))
  if "peer" in parts:
    from simko_jax.models.presets import hf_preset
    hf = hf_preset("Qwen2.5-0.5B")
    if args.quick:
      hf.update(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                intermediate_size=cfg.intermediate_size, num_attention_heads=cfg.num_heads,
                num_key_value_heads=cfg.num_kv_heads)
    part("peer", lambda: bench_torch_peer(hf, args.batch, args.prompt, args.new, args.train_seqs,
                                          args.train_prompt, args.train_response, min(max(args.micro, 8), args.train_seqs),
                                          min(args.repeats, 3), allow_cpu=args.quick))
  for path in args.merge:  # parts measured by other invocations (e.g. the peer in its own process)
    with open(path) as f:
      other = json.load(f)
    if other.get("platform") != "cpu":  # the accelerator run's device facts win over a CPU helper's
      summary.update({k: other[k] for k in ("device", "platform", "jax", "datasheet_peaks", "attention")})
    for key in ("ceilings", "decode", "train", "grpo", "peer"):
      if other.get(key) is not None and summary.get(key) is None:
        summary[key] = other[key]
    summary["errors"].update(other.get("errors", {}))
  derive(summary)
  with open(args.out, "w") as f:
    json.dump(summary, f, indent=1)
  print_table(summary)
  print("JSON " + json.dumps(summary))


def derive(s: dict) -> None:
  """Utilisation figures against the datasheet and the measured ceilings."""
  ceil = s.get("ceilings") or {}
  refs = {"measured": (ceil.get("matmul_flops"), ceil.get("copy_bytes_per_s"))}
  if s.get("datasheet_peaks"):
    refs["datasheet"] = (s["datasheet_peaks"]["bf16_flops"], s["datasheet_peaks"]["hbm_bytes_per_s"])
  d, t = s.get("decode"), s.get("train")
  for ref, (peak_f, peak_b) in refs.items():
    if d and peak_b:
      d[f"hbm_util_{ref}"] = round(F.utilisation(d["step_bytes"], d["decode_step_ms"] / 1e3, peak_b), 4)
      d[f"bound_step_ms_{ref}"] = round(1e3 * max(d["step_bytes"] / peak_b, d["step_flops"] / peak_f), 4)
    if t and peak_f:
      t[f"mfu_{ref}"] = round(F.utilisation(t["step_flops"], t["step_s"], peak_f), 4)
  if t and s.get("grpo"):
    t["simko_over_grpo"] = round(t["step_s"] / s["grpo"]["step_s"], 3)


def print_table(s: dict) -> None:
  print(f"\ndevice {s['device']} ({s['platform']}), jax {s['jax']}, attention {s['attention']}, "
        f"model {s['model']['params_total'] / 1e6:.0f}M params")
  if s.get("ceilings"):
    c = s["ceilings"]
    print(f"ceilings: bf16 matmul {c['matmul_flops'] / 1e12:.1f} TFLOP/s, copy {c['copy_bytes_per_s'] / 1e9:.0f} GB/s")
  d = s.get("decode")
  if d:
    print(f"decode  B={d['batch']}: {d['decode_step_ms']:.3f} ms/step, {d['decode_tokens_per_s']:.0f} tok/s "
          f"(end-to-end {d['end_to_end_tokens_per_s']:.0f}), HBM util {d.get('hbm_util_datasheet')} of "
          f"datasheet / {d.get('hbm_util_measured')} of measured copy, compile {d['compile_s']} s")
  t = s.get("train")
  if t:
    print(f"train   {t['seqs']}x({t['prompt']}+{t['response']}): {t['step_s']:.3f} s/step, "
          f"{t['train_tokens_per_s']:.0f} tok/s, MFU {t.get('mfu_datasheet')} of datasheet / "
          f"{t.get('mfu_measured')} of measured matmul, XLA plan {t['xla_memory_plan_gib']} GiB, "
          f"SimKO/GRPO {t.get('simko_over_grpo')}")
  p = s.get("peer")
  if p and "generate" in p:
    g = p["generate"]
    print(f"peer    transformers generate {g['decode_tokens_per_s']:.0f} decode tok/s "
          f"({g['decode_step_ms']:.2f} ms/step); torch train step {p['train']['step_s']:.3f} s")
    if d:
      print(f"ratio   decode ours/transformers {d['decode_tokens_per_s'] / g['decode_tokens_per_s']:.2f}x")
    if t:
      print(f"ratio   train step torch/ours {p['train']['step_s'] / t['step_s']:.2f}x")
  if s["errors"]:
    print("errors:", json.dumps(s["errors"], indent=1))


if __name__ == "__main__":
  main()
