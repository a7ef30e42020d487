"""Peer: transformers (PyTorch, CPU) `generate` with its KV cache, random SmolLM2-135M-shaped weights.

  python benchmarks/peers/transformers_generate.py --batch 32 --prompt 64 --new 128 --runs 3
  python benchmarks/peers/transformers_generate.py --lengths lognormal --runs 2   # 128 responses, cap 512

Sampling at temperature 1 with top_k=0 / top_p=1 (as ours), `--dtype` weights and compute (default
float32), `torch.set_num_threads(os.cpu_count())`. Response r stops after exactly lengths[r] tokens
(`common.response_lengths`): EOS is suppressed (min_new_tokens = the batch's longest length) and a
`StoppingCriteria` marks a row finished at its length (one compare of [batch] ints per step); generate
pads finished rows and returns when every row of the batch has finished. The requests run in consecutive
batches of `--batch` rows. Prints one `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SMOLLM2, add_workload_args, chunks, random_prompts, report, time_runs, workload  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  add_workload_args(ap)
  args = ap.parse_args()
  lengths = workload(args)
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
  ids = torch.tensor(random_prompts(args.requests, args.prompt, s["vocab_size"]), dtype=torch.long)

  class StopAtLength(transformers.StoppingCriteria):
    """Row r is finished once it holds limits[r] new tokens."""

    def __init__(self, limits):
      self.limits = torch.as_tensor(limits)

    def __call__(self, input_ids, scores, **kw):
      return (input_ids.shape[1] - args.prompt) >= self.limits

  def generate(rows, limits):
    kw = dict(attention_mask=torch.ones_like(ids[rows]), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
              max_new_tokens=int(limits.max()), min_new_tokens=int(limits.max()), use_cache=True, pad_token_id=0,
              stopping_criteria=transformers.StoppingCriteriaList([StopAtLength(limits)]))
    with torch.inference_mode():
      out = model.generate(ids[rows], **kw)
    assert out.shape == (len(limits), args.prompt + int(limits.max())), out.shape  # ran to the longest row
    after_stop = torch.arange(out.shape[1] - args.prompt)[None] >= torch.as_tensor(limits)[:, None]
    assert (out[:, args.prompt:][after_stop] == 0).all()  # each row padded after its own length

  def run():
    for rows in chunks(args.requests, args.batch):
      generate(rows, lengths[rows])

  # Nothing to compile: warm up with a 4-token generation instead of a full (minutes-long) call.
  warmup = lambda: generate(slice(0, args.batch), lengths[:args.batch].clip(max=4))
  first, warm = time_runs(run, args.runs, warmup=warmup)
  report("transformers", lengths, first, warm, batch=args.batch, new_tokens=args.new, length_dist=args.lengths,
         torch=torch.__version__, transformers=transformers.__version__, threads=torch.get_num_threads(),
         dtype=str(next(model.parameters()).dtype).removeprefix("torch."))


if __name__ == "__main__":
  main()
