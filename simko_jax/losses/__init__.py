"""Pure-JAX RLVR losses: token statistics, GRPO/SimKO/PSR/NSR/W-REINFORCE, advantages, KL.

Importable by any Flax/JAX project: depends on nothing but jax and the pure-Python hyper-parameter
declarations (`simko_jax.hparams.LossHParams`: every loss keyword's default, range and doc).
"""

from simko_jax.hparams import LossHParams
from simko_jax.losses.advantages import broadcast_advantages, grpo_advantages, signed_advantages
from simko_jax.losses.aggregation import (AGGREGATION_MODES, aggregate, aggregation_denominator,
                                          masked_mean)
from simko_jax.losses.api import fused_policy_loss, grpo_loss, policy_loss, simko_loss
from simko_jax.losses.chunked import token_stats_from_hidden
from simko_jax.losses.kl import KL_ESTIMATORS, kl_penalty
from simko_jax.losses.policy import (GATE_MODES, LAM_MODES, METHODS, forking_gate,
                                     policy_loss_from_stats)
from simko_jax.losses.token_stats import TokenStats, token_stats_from_logits
