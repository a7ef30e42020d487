"""Peer: one PyTorch (CPU, float32, eager) RL-style train step of a Llama-architecture model via transformers.

  python benchmarks/peers/torch_train_step.py --shape mini --seqs 8 --prompt 64 --response 128 --micro 1

Same step as ours (`benchmarks/train_step.py`): random weights of `--shape` (`shapes.py`, tied embeddings,
sdpa attention), `--seqs` sequences of prompt + response random ids in `--micro` gradient-accumulation
micro-batches, token-mean cross-entropy on the response tokens only (the policy-gradient loss of an
on-policy step is a per-token weighted log-likelihood; its cost is the same forward/backward), global-norm
clipping 1.0, AdamW (lr 1e-6). `torch.set_num_threads(os.cpu_count())`. Nothing is compiled.

Memory: CPU torch has no allocator statistics, so the step's memory is the process's peak resident set
size (ru_maxrss) minus its RSS right after `import torch, transformers` (i.e. params + grads + AdamW state
+ activations + allocator slack). Prints one `RESULT {json}` line (first step = warm-up, then the median
of `--repeats` steps).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shapes import SHAPES  # noqa: E402


def rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--shape", default="mini", choices=sorted(SHAPES))
  ap.add_argument("--seqs", type=int, default=8)
  ap.add_argument("--prompt", type=int, default=64)
  ap.add_argument("--response", type=int, default=128)
  ap.add_argument("--micro", type=int, default=1)
  ap.add_argument("--repeats", type=int, default=2)
  args = ap.parse_args()
  import json

  import torch
  import transformers
  base_rss = rss_bytes()
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  s = SHAPES[args.shape]
  cfg = transformers.LlamaConfig(
      vocab_size=s["vocab_size"], hidden_size=s["hidden_size"], num_hidden_layers=s["num_layers"],
      num_attention_heads=s["num_heads"], num_key_value_heads=s["num_kv_heads"], head_dim=s["head_dim"],
      intermediate_size=s["intermediate_size"], rms_norm_eps=s["rms_norm_eps"], tie_word_embeddings=True,
      max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=0,
      rope_parameters={"rope_type": "default", "rope_theta": s["rope_theta"]}, attn_implementation="sdpa")
  model = transformers.LlamaForCausalLM(cfg).float().train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
  t = args.prompt + args.response
  tokens = torch.randint(1, s["vocab_size"], (args.seqs, t))
  labels = tokens.clone()
  labels[:, :args.prompt] = -100
  mb = args.seqs // args.micro

  def step():
    for i in range(args.micro):
      sl = slice(i * mb, (i + 1) * mb)
      loss = model(input_ids=tokens[sl], labels=labels[sl]).loss / args.micro
      loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)

  t0 = time.perf_counter()
  step()
  first = time.perf_counter() - t0
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
  print("RESULT " + json.dumps(dict(
      name="torch", shape=args.shape, first_step_s=round(first, 3), step_s=round(statistics.median(times), 4),
      step_s_all=[round(x, 4) for x in times], peak_step_gib=round((peak - base_rss) / 2 ** 30, 3),
      torch=torch.__version__, transformers=transformers.__version__, threads=torch.get_num_threads())),
      flush=True)


if __name__ == "__main__":
  main()
