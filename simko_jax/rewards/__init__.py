"""Verifiable rewards: answer extraction, math-verify equivalence, per-source registry, process pool.

Floor 1: depends on the standard library and math-verify only (math-verify is imported lazily).
"""

from simko_jax.rewards.countdown_check import (countdown_ground_truth, countdown_reward,
                                               evaluate_countdown_expression)
from simko_jax.rewards.extract import (extract_gsm8k_answer, gold_from_gsm8k_answer,
                                       gold_from_math_solution, gold_from_olympiad_final_answer,
                                       last_boxed_content, normalize_answer)
from simko_jax.rewards.math_verify_check import boxed_math_reward, math_equivalent
from simko_jax.rewards.pool import BatchStats, VerifierPool
from simko_jax.rewards.registry import (arith_reward, compute_reward, get_reward_fn, gsm8k_reward,
                                        register_reward, registered_sources, unregister_reward)
