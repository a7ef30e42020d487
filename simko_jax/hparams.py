"""Loss, update, rollout and optimizer hyper-parameters: each field's default, allowed values and doc, once.

Every field is declared here with `hparam(default, check, doc)`, and everything else derives from it:
  * `simko_jax.config.default_config()` builds its `algo`, `rollout` and `optim` sections from
    `config_fields()` (same keys and defaults as the config files and `--config.algo.x=y` expect), and
    `config.validate` checks them with the declared `Check`s;
  * the trainer builds its `LossHParams` with `LossHParams.from_config(cfg)`;
  * the loss API (`simko_jax.losses`) takes its keyword defaults from `LossHParams()`.
Cross-field rules (one field divides another, ...) live in `simko_jax.config`.

Pure Python (no JAX, no ml_collections): `simko_jax.losses`, the lowest floor, imports it.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar

from simko_jax.checks import (BOOL, NON_NEGATIVE_INT, POSITIVE_INT, PROBABILITY, Check, in_range,
                              one_of)

# The choices of the string-valued loss fields; the loss modules dispatch on these names.
METHODS = ("grpo", "simko", "psr", "nsr", "w_reinforce")
GATE_MODES = ("quantile", "absolute")
LAM_MODES = ("advantage", "ratio")
AGGREGATION_MODES = ("token_mean", "micro_batch_token_mean", "seq_mean_token_mean", "seq_mean_token_sum")
KL_ESTIMATORS = ("k1", "k2", "k3")
ADVANTAGE_ESTIMATORS = ("grpo", "grpo_no_std", "signed")
SCHEDULES = ("constant", "cosine", "linear")
NUM_RANK_PROBS = 5  # rank-1..5 candidate probabilities are always reported (the paper's figure)


def hparam(default: Any, check: Check, doc: str, *, key: str | None = "") -> Any:
  """A dataclass field with its allowed values and one-line doc.

  key: the config path, when it is not `<section>.<field name>`; None for a field derived from other
    fields (not a config key). A key in another section is read from there, not declared twice.
  """
  return dataclasses.field(default=default, metadata={"check": check, "doc": doc, "key": key})


class _HParams:
  """Shared class methods of the hyper-parameter dataclasses; `section` is their config section."""
  section: ClassVar[str]

  @classmethod
  def check(cls, name: str) -> Check:
    """The declared `Check` of field `name`."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["check"]

  @classmethod
  def config_keys(cls) -> dict[str, dataclasses.Field]:
    """Config path -> field, for every field read from the config (derived fields excluded)."""
    out = {}
    for f in dataclasses.fields(cls):
      key = f.metadata["key"]
      if key is not None:
        out[key or f"{cls.section}.{f.name}"] = f
    return out

  @classmethod
  def config_fields(cls) -> dict[str, dataclasses.Field]:
    """The fields this class declares in its own config section (the config derives them from here)."""
    return {k: f for k, f in cls.config_keys().items() if k.startswith(cls.section + ".")}

  @classmethod
  def from_config(cls, cfg):
    """The hyper-parameters of a run config (an ml_collections ConfigDict or nested dicts)."""
    values = {}
    for path, f in cls.config_keys().items():
      node = cfg
      for part in path.split("."):
        node = node[part]
      values[f.name] = node
    return cls(**values, **cls._derived(cfg))

  @classmethod
  def _derived(cls, cfg) -> dict[str, Any]:
    del cfg
    return {}


@dataclasses.dataclass(frozen=True)
class RolloutHParams(_HParams):
  """How responses are sampled in one RL iteration (`config.rollout`)."""
  section: ClassVar[str] = "rollout"
  prompts_per_step: int = hparam(4, POSITIVE_INT, "prompts per RL iteration")
  group_size: int = hparam(8, POSITIVE_INT, "G: responses sampled per prompt")
  max_new_tokens: int = hparam(128, POSITIVE_INT, "generation budget per response")
  temperature: float = hparam(1.0, in_range(0.0, 10.0, lo_open=True),
                              "sampling temperature (the loss's log-probs use the same)")
  top_p: float = hparam(1.0, in_range(0.0, 1.0, lo_open=True), "nucleus sampling mass; 1.0 = off")
  top_k: int = hparam(0, NON_NEGATIVE_INT, "sample among the top_k tokens; 0 = off")
  sample_chunk_prompts: int = hparam(0, NON_NEGATIVE_INT,
                                     "prompts per sampler call (bounds the KV cache); 0 = all")
  dynamic_sampling: bool = hparam(False, BOOL,
                                  "drop groups with all-equal rewards and refill (DAPO)")
  max_refill_rounds: int = hparam(3, NON_NEGATIVE_INT, "dynamic sampling: extra sampling rounds")


@dataclasses.dataclass(frozen=True)
class LossHParams(_HParams):
  """The policy loss (`config.algo` loss fields, plus the sampling temperature). SIMKO_METHOD.md.

  The defaults are the SimKO authors' released settings. `on_policy` is derived (`is_on_policy`).
  """
  section: ClassVar[str] = "algo"
  method: str = hparam("simko", one_of(*METHODS), "policy loss: " + " | ".join(METHODS))
  top_k: int = hparam(3, POSITIVE_INT, "SimKO: top candidates that share the positive gradient")
  alpha: float = hparam(0.01, PROBABILITY, "SimKO: weight of the top_k term at gated positive tokens")
  lam: float = hparam(1.1, in_range(1.0, 10.0), "SimKO: penalty multiplier at gated rank-1 negatives")
  lam_on: str = hparam("advantage", one_of(*LAM_MODES),
                       "lam scales the advantage (released code) or the ratio (paper's equation)")
  tau: float = hparam(0.8, PROBABILITY,
                      "gate: per-response entropy quantile (gate='quantile') or threshold in nats")
  gate: str = hparam("quantile", one_of(*GATE_MODES), "forking-token gate threshold mode")
  clip_low: float = hparam(0.2, in_range(0.0, 1.0), "PPO clip: ratio >= 1 - clip_low")
  clip_high: float = hparam(0.2, in_range(0.0, 10.0),
                            "PPO clip: ratio <= 1 + clip_high (> clip_low is DAPO's clip-higher)")
  clip_ratio_c: float | None = hparam(
      None, Check(lambda v: v is None or in_range(1.0, lo_open=True).ok(v), "None or a number > 1"),
      "dual-clip bound for negative advantages (verl: 3.0); None = off")
  psr_weight: float = hparam(0.1, in_range(0.0, 1.0), "W-REINFORCE weight of positive samples")
  aggregation: str = hparam("token_mean", one_of(*AGGREGATION_MODES),
                            "loss normaliser over tokens / responses (losses/aggregation.py)")
  kl_coef: float = hparam(0.0, in_range(0.0, 10.0), "weight of the KL penalty to the reference policy")
  kl_estimator: str = hparam("k3", one_of(*KL_ESTIMATORS), "per-token KL estimator (losses/kl.py)")
  entropy_coef: float = hparam(0.0, in_range(0.0, 1.0), "weight of the entropy bonus")
  chunk_size: int = hparam(512, POSITIVE_INT, "tokens per chunk of the fused LM head + loss (per device)",
                           key="algo.loss_chunk_size")
  temperature: float = hparam(RolloutHParams.temperature,
                              RolloutHParams.check("temperature"),
                              "logits are divided by the sampling temperature",
                              key="rollout.temperature")
  on_policy: bool = hparam(False, BOOL, "old log-probs are sg(current log-probs): one PPO epoch over "
                           "one mini-batch, whose behaviour policy is the current one", key=None)

  @property
  def num_candidates(self) -> int:
    """C, the top candidates kept per token: SimKO reads the first top_k, the metrics report rank-1..5
    probabilities and Lambda(1..max(top_k, 3)); the same for every method, so metrics compare."""
    return max(self.top_k, NUM_RANK_PROBS)

  @classmethod
  def _derived(cls, cfg):
    return {"on_policy": is_on_policy(cfg)}


@dataclasses.dataclass(frozen=True)
class UpdateHParams(_HParams):
  """How one rollout becomes optimizer updates (`config.algo`, the non-loss fields)."""
  section: ClassVar[str] = "algo"
  advantage: str = hparam("grpo", one_of(*ADVANTAGE_ESTIMATORS),
                          "grpo | grpo_no_std (Dr. GRPO) | signed (+1/-1 by reward)")
  adv_eps: float = hparam(1e-6, in_range(0.0, 1.0, lo_open=True), "added to the group std (GRPO)")
  overlong_mask: bool = hparam(False, BOOL, "drop truncated responses from the loss (DAPO)")
  ppo_epochs: int = hparam(1, POSITIVE_INT, "passes over each rollout")
  mini_batch_prompts: int = hparam(4, POSITIVE_INT,
                                   "prompts per optimizer step (divides rollout.prompts_per_step)")
  micro_batch_size: int = hparam(8, POSITIVE_INT, "responses per gradient-accumulation micro-batch")


@dataclasses.dataclass(frozen=True)
class OptimizerHParams(_HParams):
  """AdamW with global-norm clipping and a learning-rate schedule (`config.optim`)."""
  section: ClassVar[str] = "optim"
  learning_rate: float = hparam(1e-6, in_range(0.0, 1.0, lo_open=True), "peak learning rate")
  schedule: str = hparam("constant", one_of(*SCHEDULES), "decay after warm-up: " + " | ".join(SCHEDULES))
  warmup_steps: int = hparam(0, NON_NEGATIVE_INT, "linear warm-up from 0, in optimizer updates")
  weight_decay: float = hparam(0.0, in_range(0.0, 1.0), "AdamW decoupled weight decay")
  b1: float = hparam(0.9, in_range(0.0, 1.0, hi_open=True), "Adam first-moment decay")
  b2: float = hparam(0.999, in_range(0.0, 1.0, hi_open=True), "Adam second-moment decay")
  eps: float = hparam(1e-8, in_range(0.0, 1.0, lo_open=True), "Adam denominator epsilon")
  grad_clip: float = hparam(1.0, in_range(0.0), "global gradient-norm clip; 0 = off")


def resolve(cls, base=None, **overrides):
  """`base` (an instance of `cls`; default `cls()`) with `overrides` by field name. Values are not
  range-checked (they may be traced arrays; the run config is checked by `config.validate`); an
  unknown name raises TypeError naming the closest field."""
  names = [f.name for f in dataclasses.fields(cls)]
  for name in overrides:
    if name not in names:
      close = difflib.get_close_matches(name, names, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else f" Known: {names}."
      raise TypeError(f"{name!r} is not a {cls.__name__} field.{hint}")
  return dataclasses.replace(cls() if base is None else base, **overrides)


# The config sections, in order, and the classes that declare each one's fields.
SECTIONS = {"rollout": (RolloutHParams,), "algo": (LossHParams, UpdateHParams),
            "optim": (OptimizerHParams,)}


def is_on_policy(cfg) -> bool:
  """True when every response is used in exactly one optimizer step taken from the sampling params."""
  algo = cfg["algo"]
  return algo["ppo_epochs"] == 1 and algo["mini_batch_prompts"] == cfg["rollout"]["prompts_per_step"]
