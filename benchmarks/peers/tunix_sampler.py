"""Peer: Google Tunix's `tunix.generate.sampler.Sampler` (google-tunix==0.1.7), random SmolLM2-135M-shaped
weights in its Llama3 model (tied embeddings), on JAX CPU.

  /tmp/venv-peers/bin/python benchmarks/peers/tunix_sampler.py --batch 32 --prompt 64 --new 128 --runs 3
  /tmp/venv-peers/bin/python benchmarks/peers/tunix_sampler.py --lengths lognormal --runs 2  # cap 512

Runs in its own venv (see `requirements-bench.txt`), so it imports nothing from simko_jax. Tunix takes
strings: a whitespace "tokenizer" maps "12 7 ..." to ids. Sampling: temperature 1, top_p=1 (its
`jax.random.categorical` fast path), return_logprobs=True (ours always returns log-probs), eos id -1
(never emitted). `--dtype bfloat16` casts its params (it has no dtype option; activations and the cache
follow the params). The prefill runs once per prompt (n = 1). The requests run in consecutive batches
of `--batch` rows. Per-row lengths (`common.response_lengths`): Tunix has no per-row limit, but its loop
decodes every row of the batch at every step and exits when all rows are done, so a per-row stop would
end the batch at its longest length; each batch therefore runs `max_generation_steps` = its longest
length (the same steps and work as a per-row stop; the extra tokens of shorter rows are not counted).
The cache is sized for the cap; each distinct longest length is one more compiled program (compiled in
the first call, reused by the timed runs). Prints `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SMOLLM2, add_workload_args, chunks, random_prompts, report, time_runs, workload  # noqa: E402


class IdTokenizer:
  """encode("3 17 5") -> [3, 17, 5]; no BOS; pad 0; eos -1 (never sampled)."""

  def encode(self, text, **kw):
    return [int(t) for t in text.split()]

  def decode(self, ids, **kw):
    return " ".join(str(int(i)) for i in ids)

  def bos_id(self):
    return None

  def eos_id(self):
    return -1

  def pad_id(self):
    return 0


def main():
  ap = argparse.ArgumentParser()
  add_workload_args(ap)
  args = ap.parse_args()
  lengths = workload(args)
  import jax
  from flax import nnx
  from tunix.generate import sampler as sampler_lib
  from tunix.models.llama3 import model as llama3
  import importlib.metadata as md

  s = SMOLLM2
  cfg = llama3.ModelConfig(num_layers=s["num_layers"], vocab_size=s["vocab_size"],
                           embed_dim=s["hidden_size"], hidden_dim=s["intermediate_size"],
                           num_heads=s["num_heads"], head_dim=s["head_dim"],
                           num_kv_heads=s["num_kv_heads"], rope_theta=int(s["rope_theta"]),
                           norm_eps=s["rms_norm_eps"], weight_tying=True)
  model = llama3.Llama3(cfg, rngs=nnx.Rngs(0))
  if args.dtype != "float32":  # its ModelConfig has no dtype: cast the params; activations follow them
    nnx.update(model, jax.tree.map(lambda x: x.astype(args.dtype), nnx.state(model, nnx.Param)))
  cache = sampler_lib.CacheConfig(cache_size=args.prompt + args.new, num_layers=s["num_layers"],
                                  num_kv_heads=s["num_kv_heads"], head_dim=s["head_dim"])
  sampler = sampler_lib.Sampler(model, IdTokenizer(), cache)
  prompts = [" ".join(map(str, row)) for row in random_prompts(args.requests, args.prompt, s["vocab_size"])]

  def run():
    for rows in chunks(args.requests, args.batch):
      steps = int(lengths[rows].max())
      out = sampler(prompts[rows], max_generation_steps=steps, max_prompt_length=args.prompt, temperature=1.0,
                    top_p=1.0, top_k=None, eos_tokens=[-1], return_logprobs=True, seed=0)
      assert all(len(t) == steps for t in out.tokens), [len(t) for t in out.tokens][:4]

  first, warm = time_runs(run, args.runs)
  report("tunix", lengths, first, warm, batch=args.batch, new_tokens=args.new, length_dist=args.lengths,
         tunix=md.version("google-tunix"), jax=jax.__version__,
         dtype=str(jax.tree.leaves(nnx.state(model))[0].dtype))


if __name__ == "__main__":
  main()
