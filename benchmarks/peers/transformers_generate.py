"""Peer: transformers (PyTorch, CPU) `generate` with its KV cache, random SmolLM2-135M-shaped weights.

  python benchmarks/peers/transformers_generate.py --batch 32 --prompt 64 --new 128 --runs 3

Sampling at temperature 1 with top_k=0 / top_p=1 (as ours), exactly `--new` tokens (min_new_tokens,
no EOS stop), `--dtype` weights and compute (default float32), `torch.set_num_threads(os.cpu_count())`. Prints one `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SMOLLM2, random_prompts, report, time_runs  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--prompt", type=int, default=64)
  ap.add_argument("--new", type=int, default=128)
  ap.add_argument("--runs", type=int, default=3)
  ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  args = ap.parse_args()
  import torch
  import transformers
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  s = SMOLLM2
  cfg = transformers.LlamaConfig(
      vocab_size=s["vocab_size"], hidden_size=s["hidden_size"], num_hidden_layers=s["num_layers"],
      num_attention_heads=s["num_heads"], num_key_value_heads=s["num_kv_heads"], head_dim=s["head_dim"],
      intermediate_size=s["intermediate_size"], rms_norm_eps=s["rms_norm_eps"],
      tie_word_embeddings=True, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=0,
      rope_parameters={"rope_type": "default", "rope_theta": s["rope_theta"]})
  model = transformers.LlamaForCausalLM(cfg).eval().to(getattr(torch, args.dtype))
  ids = torch.tensor(random_prompts(args.batch, args.prompt, s["vocab_size"]), dtype=torch.long)
  mask = torch.ones_like(ids)
  kw = dict(attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
            max_new_tokens=args.new, min_new_tokens=args.new, use_cache=True, pad_token_id=0)

  def run(new=args.new):
    with torch.inference_mode():
      out = model.generate(ids, **{**kw, "max_new_tokens": new, "min_new_tokens": new})
    assert out.shape == (args.batch, args.prompt + new), out.shape

  # Nothing to compile: warm up with a 4-token generation instead of a full (minutes-long) call.
  first, warm = time_runs(run, args.runs, warmup=lambda: run(4))
  report("transformers", args.batch, args.new, first, warm, torch=torch.__version__,
         transformers=transformers.__version__, threads=torch.get_num_threads(), dtype=str(next(model.parameters()).dtype).removeprefix("torch."))


if __name__ == "__main__":
  main()
