"""FLOP and byte counts of the policy's train step and decode step, and utilisation against a chip's peak.

Model FLOPs follow the usual MFU convention (PaLM, MaxText): count the matmuls a dense implementation
must do, never what remat recomputes, and count attention over the full (padded) context without the
causal half-saving. Letters as in docs/shapes.md: for a decoder with L layers, width D, H query heads /
K kv heads of size Dh, MLP width F and vocab V, the matmul weights W that touch every token are

  W_layer = D*H*Dh (q) + 2*D*K*Dh (k, v) + H*Dh*D (o) + 3*D*F (gate, up, down)
  W_body  = L * W_layer
  W_head  = V * D                      (the LM head; tied or not, it is one matmul per scored token)

and one forward pass costs 2 FLOPs per parameter per token plus attention, 2 * 2*H*Dh FLOPs per query
token per visible key (q.k scores and probs.v), per layer:

  forward(tokens n, context c, scored tokens n_h) = 2*W_body*n + 2*W_head*n_h + 4*L*H*Dh*n*c.

Train step (RL, one optimizer step over B = `num_seqs` sequences of T = Tp + R tokens, Tp = `prompt_len`,
R = `response_len`; only the response positions reach the LM head; backward = 2x forward):

  train_flops = 3 * [2*W_body*B*T + 2*W_head*B*R + 4*L*H*Dh*B*T*T]
  (+ one more forward, 1/3 of that, when old log-probs need their own pass: off-policy only).

Decode step (one new token for each of B rows against a context of c cached positions):

  decode_flops = B * (2*W_body + 2*W_head + 4*L*H*Dh*c)
  decode_bytes = bytes(W_body + W_head weights) + B*c * L * 2*K*Dh * bytes(cache dtype)

i.e. every weight is read once per step and every row reads its own K/V cache; activations are a few
MB and are ignored (the bound is then the least traffic any implementation must do). The decode bound
is max(decode_flops / peak_flops, decode_bytes / peak_bandwidth); at B <= a few hundred it is the
bandwidth term.

MFU = train_flops / step_seconds / peak_flops; bandwidth utilisation = decode_bytes / step_seconds /
peak_bandwidth. `PEAKS` holds datasheet numbers (dense, no sparsity) per chip; benchmarks also report
against ceilings measured in the same run.
"""

from __future__ import annotations

import dataclasses

# Datasheet peaks per chip: dense bf16 FLOP/s and HBM bytes/s.
PEAKS: dict[str, tuple[float, float]] = {
    "H100": (989.4e12, 3.35e12),   # H100 SXM5 80 GB HBM3
    "H200": (989.4e12, 4.8e12),    # H200 SXM 141 GB HBM3e
    "A100": (312e12, 2.039e12),    # A100 SXM 80 GB
    "TPU v4": (275e12, 1.2e12),
    "TPU v5 lite": (197e12, 0.819e12),  # v5e
    "TPU v5p": (459e12, 2.765e12),
}


def chip_peaks(device_kind: str) -> tuple[float, float] | None:
  """(peak bf16 FLOP/s, peak HBM bytes/s) for a `jax.Device.device_kind`, or None if unknown."""
  kind = device_kind.upper()
  for name, peaks in PEAKS.items():
    if name.upper() in kind:
      return peaks
  return None


@dataclasses.dataclass(frozen=True)
class ParamCounts:
  """Matmul parameter counts: per layer, all layers (`body`) and the LM head."""
  layer: int
  body: int
  head: int
  embedding: int

  @property
  def total(self) -> int:
    """Stored parameters (the LM head counted once when tied to the embedding; norms/biases ignored)."""
    return self.body + self.embedding + (0 if self.head_tied else self.head)

  head_tied: bool = False


def param_counts(cfg) -> ParamCounts:
  """Matmul parameters of a `models.ModelConfig`-like object (fields vocab_size, hidden_size,
  num_layers, num_heads, num_kv_heads, head_dim, intermediate_size, tie_word_embeddings)."""
  width, heads, kv_heads, head_dim = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  layer = (width * heads * head_dim + 2 * width * kv_heads * head_dim + heads * head_dim * width
           + 3 * width * cfg.intermediate_size)
  head = cfg.vocab_size * width
  return ParamCounts(layer=layer, body=cfg.num_layers * layer, head=head, embedding=head,
                     head_tied=bool(cfg.tie_word_embeddings))


def forward_flops(cfg, tokens: int, context: float, scored_tokens: int) -> float:
  """Model FLOPs of a forward over `tokens` query tokens that each see `context` keys, of which
  `scored_tokens` go through the LM head."""
  pc = param_counts(cfg)
  attention = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim * tokens * context
  return 2.0 * pc.body * tokens + 2.0 * pc.head * scored_tokens + attention


def train_step_flops(cfg, num_seqs: int, prompt_len: int, response_len: int, *,
                     old_logprob_pass: bool = False) -> float:
  """Model FLOPs of one RL optimizer step (forward + backward, optional separate old-log-prob forward)."""
  t = prompt_len + response_len
  fwd = forward_flops(cfg, num_seqs * t, t, num_seqs * response_len)
  return (4.0 if old_logprob_pass else 3.0) * fwd


def decode_step_flops(cfg, batch: int, context: float) -> float:
  """Model FLOPs of one decode step: `batch` new tokens, each attending `context` cached positions."""
  return forward_flops(cfg, batch, context, batch)


def decode_step_bytes(cfg, batch: int, context: float, weight_bytes: int = 2,
                      cache_bytes: int = 2) -> float:
  """Least HBM traffic of one decode step: all matmul weights once + each row's K/V cache once."""
  pc = param_counts(cfg)
  kv_per_position = cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * cache_bytes
  return float((pc.body + pc.head) * weight_bytes + batch * context * kv_per_position)


def utilisation(work: float, seconds: float, peak: float) -> float:
  """Fraction of `peak` (FLOP/s or bytes/s) achieved by doing `work` in `seconds`."""
  return work / seconds / peak if seconds > 0 and peak > 0 else float("nan")
