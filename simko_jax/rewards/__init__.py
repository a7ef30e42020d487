"""Verifiable rewards: answer extraction, math-verify equivalence, per-source registry, process pool.

Floor 1: depends on the standard library and math-verify only (math-verify is imported lazily).

For a compiled RL step (these import jax, so they are not imported here: the pool's workers stay light):
  `on_device.batch_reward_for(data_source, tokenizer, pool=...)`  the entry point: on device where possible
  `token_text`     token ids -> the decoded text's code points, on device
  `arith_device`, `countdown_device`  the procedural tasks' verifiers in jax.numpy, equal to the host ones
  `host_callback`  the verifier pool reachable from jit through `jax.pure_callback`
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
