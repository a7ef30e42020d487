"""Independent PyTorch transcription of the SimKO / GRPO equations, for tests only.

Written from SIMKO_METHOD.md and the paper's equations, deliberately in the *paper's* form rather than
ours: the positive term uses per-candidate ratios gamma^(k) = pi(v_k) / pi_old(v_k) with explicit old
top-K log-probs (which must cancel), the candidates' log-probs are gathered from a K-times expanded
log-softmax (as the authors' code does), the gate uses `torch.quantile` per response, and the surrogate
is the literal `-min(A r, A clip(r))`. W-REINFORCE (Zhu et al. 2025) multiplies positive advantages by
`psr_weight`; dual-clip (Ye et al. 2020, verl's `clip_ratio_c`) bounds the surrogate of a negative
advantage from below by `c A`: `max(min(A r, A clip(r)), c A)`.
"""

from __future__ import annotations

import numpy as np
import torch


def reference_loss(logits, targets, old_logprobs, advantages, mask, *, method="simko", top_k=3,
                   alpha=0.01, lam=1.1, tau=0.8, gate="quantile", lam_on="advantage",
                   clip_low=0.2, clip_high=0.2, temperature=1.0, old_topk_logprobs=None,
                   psr_weight=0.1, clip_ratio_c=None):
  """Returns (loss, d loss / d logits) as numpy float64 arrays. Inputs are numpy arrays."""
  z_leaf = torch.tensor(np.asarray(logits, np.float32), dtype=torch.float32, requires_grad=True)
  z = z_leaf / temperature
  y = torch.tensor(np.asarray(targets), dtype=torch.long)
  old = torch.tensor(np.asarray(old_logprobs, np.float32))
  m = torch.tensor(np.asarray(mask, np.float32))
  adv = torch.tensor(np.asarray(advantages, np.float32))
  if adv.ndim == 1:
    adv = adv[:, None].expand_as(m)
  batch, length, vocab = z.shape

  logp_all = torch.log_softmax(z, dim=-1)
  lp = logp_all.gather(-1, y[..., None])[..., 0]
  probs = logp_all.exp()
  entropy = -(probs * logp_all).sum(-1).detach()
  gamma = torch.exp(lp - old)

  ratio = gamma
  a = adv.clone()
  if method == "simko":
    w = torch.zeros_like(m)
    for i in range(batch):
      valid = m[i] > 0
      if valid.sum() == 0:
        continue
      thr = torch.quantile(entropy[i][valid], tau) if gate == "quantile" else torch.tensor(tau)
      w[i] = ((entropy[i] > thr) & valid).float()
    topk_ids = z.detach().topk(top_k, dim=-1).indices                    # [B, T, K]
    expanded = logp_all[:, :, None, :].expand(batch, length, top_k, vocab)  # K copies, as upstream
    logp_k = expanded.gather(-1, topk_ids[..., None])[..., 0]              # [B, T, K]
    if old_topk_logprobs is None:
      old_topk_logprobs = np.zeros((batch, length, top_k), np.float32)
    gamma_k = torch.exp(logp_k - torch.tensor(old_topk_logprobs))
    mix = sum((gamma / gamma_k[..., k]).detach() * gamma_k[..., k] for k in range(top_k)) / top_k
    pos = (a > 0).float() * w
    ratio_pos = (1 - alpha * pos) * gamma + alpha * pos * mix
    ratio = torch.where(a > 0, ratio_pos, gamma)
    is_rank1 = y == z.detach().argmax(-1)
    boosted = (a < 0) & (w > 0) & is_rank1
    if lam_on == "advantage":
      a = torch.where(boosted, lam * a, a)
    else:
      ratio = torch.where(boosted, lam * ratio, ratio)
  elif method == "psr":
    a = torch.where(a > 0, a, torch.zeros_like(a))
  elif method == "nsr":
    a = torch.where(a < 0, a, torch.zeros_like(a))
  elif method == "w_reinforce":
    a = torch.where(a > 0, psr_weight * a, a)

  surrogate = torch.minimum(a * ratio, a * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
  if clip_ratio_c is not None:
    surrogate = torch.where(a < 0, torch.maximum(surrogate, clip_ratio_c * a), surrogate)
  loss = -(surrogate * m).sum() / m.sum().clamp(min=1.0)
  loss.backward()
  return loss.detach().double().numpy(), z_leaf.grad.double().numpy()
