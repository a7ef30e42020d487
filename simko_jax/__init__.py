"""simko_jax: SimKO (Simple Pass@K Optimization) and GRPO for language models in JAX / Flax NNX."""

from simko_jax.losses import (fused_policy_loss, grpo_advantages, grpo_loss, policy_loss,
                              simko_loss)

__version__ = "0.1.0"
