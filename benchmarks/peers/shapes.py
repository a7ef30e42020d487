"""Model shapes shared by the RL-iteration, train-step and compile-time benchmarks and their peers.

Imports nothing (every venv can use it). All are Llama-style decoders (RMSNorm, RoPE, SwiGLU MLP, GQA,
tied embeddings) with SmolLM2's vocabulary of 49,152, so the LM head stays realistic while the body
shrinks; `smollm2` is SmolLM2-135M itself.

  name        layers  d    heads/kv  head  MLP    params (body + tied embedding)
  smollm2     30      576  9/3       64    1536   106.2M + 28.3M = 134.5M
  smollm2-12  12      576  9/3       64    1536    42.5M + 28.3M =  70.8M
  mini        8       384  6/2       64    1024    12.6M + 18.9M =  31.5M
  micro       4       256  4/2       64     768     3.1M + 12.6M =  15.7M
"""

from __future__ import annotations

_BASE = dict(vocab_size=49152, rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, head_dim=64)

SHAPES: dict[str, dict] = {
    "smollm2": dict(_BASE, hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3, intermediate_size=1536),
    "smollm2-12": dict(_BASE, hidden_size=576, num_layers=12, num_heads=9, num_kv_heads=3,
                       intermediate_size=1536),
    "mini": dict(_BASE, hidden_size=384, num_layers=8, num_heads=6, num_kv_heads=2, intermediate_size=1024),
    "micro": dict(_BASE, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=768),
}


def param_count(s: dict) -> int:
  """Matmul parameters of the body plus the (tied) embedding; norms ignored."""
  d, h = s["hidden_size"], s["head_dim"]
  layer = d * (s["num_heads"] + 2 * s["num_kv_heads"]) * h + s["num_heads"] * h * d + 3 * d * s["intermediate_size"]
  return s["num_layers"] * layer + s["vocab_size"] * d
