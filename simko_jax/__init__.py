"""simko_jax: SimKO (Simple Pass@K Optimization) and GRPO for language models in JAX / Flax NNX.

The loss functions are re-exported lazily, so `import simko_jax.rewards` (used in verifier worker
processes) does not import JAX.
"""

__version__ = "0.1.0"

_LOSS_EXPORTS = ("simko_loss", "grpo_loss", "policy_loss", "fused_policy_loss", "grpo_advantages")
__all__ = list(_LOSS_EXPORTS)


def __getattr__(name):
  if name in _LOSS_EXPORTS:
    from simko_jax import losses  # noqa: PLC0415
    return getattr(losses, name)
  raise AttributeError(f"module 'simko_jax' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_LOSS_EXPORTS])
