"""FLOP/byte formulas of `metrics.flops` against XLA's own cost analysis and a parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from simko_jax.metrics import flops as F
from simko_jax.models import Transformer, tiny_qwen2


def test_param_counts_match_the_model():
  cfg = tiny_qwen2(vocab_size=512, hidden_size=128, intermediate_size=384, num_layers=3)
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  pc = F.param_counts(cfg)
  norms_and_biases = cfg.num_layers * (2 * cfg.hidden_size + (cfg.num_heads + 2 * cfg.num_kv_heads)
                                       * cfg.head_dim) + cfg.hidden_size
  assert pc.total + norms_and_biases == total  # untied: embedding + LM head both stored
  assert F.param_counts(cfg.replace(tie_word_embeddings=True)).total == pc.total - pc.head


def test_forward_flops_match_xla_cost_analysis():
  """Matmul + attention FLOPs are what XLA counts for the forward, up to elementwise work (< 5 %)."""
  # One layer: XLA counts a scanned (while-loop) body once, whatever its trip count.
  cfg = tiny_qwen2(vocab_size=2048, hidden_size=256, intermediate_size=1024, num_layers=1,
                   num_heads=4, num_kv_heads=2, head_dim=64)
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  b, t = 2, 64

  def forward(state, tokens):
    return nnx.merge(graphdef, state)(tokens)
  tokens = jnp.ones((b, t), jnp.int32)
  cost = jax.jit(forward).lower(state, tokens).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  ours = F.forward_flops(cfg, b * t, t, b * t)
  assert 1.0 <= cost["flops"] / ours < 1.05, (cost["flops"], ours)


def test_train_and_decode_counts():
  cfg = tiny_qwen2()
  pc = F.param_counts(cfg)
  fwd = F.forward_flops(cfg, 4 * 10, 10, 4 * 6)
  assert F.train_step_flops(cfg, 4, 4, 6) == 3 * fwd
  assert F.train_step_flops(cfg, 4, 4, 6, old_logprob_pass=True) == 4 * fwd
  kv = cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * 2
  assert F.decode_step_bytes(cfg, 8, 100) == (pc.body + pc.head) * 2 + 8 * 100 * kv
  assert F.utilisation(10.0, 2.0, 10.0) == 0.5


def test_chip_peaks_lookup():
  assert F.chip_peaks("NVIDIA H100 80GB HBM3") == F.PEAKS["H100"]
  assert F.chip_peaks("NVIDIA H200") == F.PEAKS["H200"]
  assert F.chip_peaks("TPU v5 lite") == F.PEAKS["TPU v5 lite"]
  assert F.chip_peaks("cpu") is None
