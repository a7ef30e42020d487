"""pass@k and maj@k estimators from n sampled answers per problem. numpy only.

pass@k (Chen et al. 2021, unbiased): with n samples of which c are correct,
    pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1..n} (1 - k/i)
computed in log space as -expm1(sum log1p(-k/i)), so n in the thousands neither overflows nor loses
precision; it is exactly 1 when n - c < k and exactly 0 when c == 0.

maj@k: accuracy of majority voting among k samples. Voting rules (all methods):
  * answers are hashable canonical forms (e.g. normalised strings); `None` (no answer extracted) casts
    no vote; if no sample in the k-subset has an answer, the vote is wrong;
  * the winner is the most frequent answer; ties go to the answer whose first occurrence comes earliest
    in sample order (what `collections.Counter.most_common` does over the first k samples);
  * the vote is correct iff the winning answer is correct; correctness is assumed to be a function of
    the answer and is read from that answer's first sample among all n.
Methods:
  * "first_k":  majority over the first k samples (the practical estimator of Qwen2.5-Math eval scripts;
                one draw of the random variable below when samples are i.i.d.);
  * "exact":    exact expectation over all C(n, k) k-subsets chosen uniformly (enumerated);
  * "monte_carlo": seeded estimate of the same expectation from `num_draws` random k-subsets;
  * "auto":     "exact" when C(n, k) <= `max_exact_subsets`, else "monte_carlo".
"""

from __future__ import annotations

import itertools
import math
from typing import Hashable, Sequence

import numpy as np

MAJ_METHODS = ("first_k", "exact", "monte_carlo", "auto")


def _pass_at_k_fixed_k(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
  """pass@k for flat int arrays n, c and one k (validated)."""
  out = np.ones(n.shape, dtype=np.float64)
  out[c == 0] = 0.0
  interior = (c > 0) & (n - c >= k)
  if not interior.any():
    return out
  max_n = int(n[interior].max())
  # prefix[j] = sum_{i=k+1..j} log1p(-k/i) for j >= k (terms with i <= k never occur: n - c >= k).
  i = np.arange(k + 1, max_n + 1, dtype=np.float64)
  prefix = np.concatenate([np.zeros(k + 1), np.cumsum(np.log1p(-k / i))])
  log_ratio = prefix[n[interior]] - prefix[n[interior] - c[interior]]
  out[interior] = -np.expm1(log_ratio)
  return out


def pass_at_k(n, c, k) -> np.ndarray:
  """Unbiased pass@k per problem.

  Args:
    n: int or int array [P] of samples per problem (n >= 1).
    c: int or int array [P] of correct samples (0 <= c <= n).
    k: int or int array broadcastable to [P], 1 <= k <= n.
  Returns: float64 array of the broadcast shape (0-d for scalar inputs), values in [0, 1], no NaN.
  """
  n_arr, c_arr, k_arr = np.broadcast_arrays(np.asarray(n), np.asarray(c), np.asarray(k))
  if not all(np.issubdtype(a.dtype, np.integer) for a in (n_arr, c_arr, k_arr)):
    raise TypeError("n, c and k must be integers")
  if np.any(c_arr < 0) or np.any(c_arr > n_arr):
    raise ValueError("need 0 <= c <= n")
  if np.any(k_arr < 1) or np.any(k_arr > n_arr):
    raise ValueError("need 1 <= k <= n")
  n_flat, c_flat, k_flat = (a.reshape(-1).astype(np.int64) for a in (n_arr, c_arr, k_arr))
  out = np.empty(n_flat.shape, dtype=np.float64)
  for k_value in np.unique(k_flat):
    sel = k_flat == k_value
    out[sel] = _pass_at_k_fixed_k(n_flat[sel], c_flat[sel], int(k_value))
  return out.reshape(n_arr.shape)


def mean_pass_at_k(n, c, k) -> float:
  """Mean of `pass_at_k` over problems."""
  return float(np.mean(pass_at_k(n, c, k)))


def _majority_correct(votes: np.ndarray, correct_per_answer: np.ndarray) -> np.ndarray:
  """Per subset: is the majority answer correct? (No docs/shapes.md letter fits subsets, votes or
  distinct answers, so these axes are spelled out.)

  Args:
    votes: int [num_subsets, k] answer ids of each subset's samples in increasing sample order
      (-1 = no answer).
    correct_per_answer: bool [num_answers], whether answer id a is correct (its earliest sample's
      flag; see module doc).
  Returns: bool [num_subsets].
  """
  num_answers = correct_per_answer.shape[0]
  num_subsets, k = votes.shape
  if num_answers == 0:
    return np.zeros(num_subsets, dtype=bool)
  onehot = votes[:, :, None] == np.arange(num_answers)[None, None, :]    # [subsets, k, answers]
  counts = onehot.sum(axis=1)                                             # [subsets, answers]
  positions = np.arange(k)[None, :, None]
  first_position = np.where(onehot, positions, k).min(axis=1)            # [subsets, answers]
  # Most votes first; among equal counts the earliest first occurrence (smaller key wins).
  key = -counts * (k + 1) + first_position
  winner = np.argmin(key, axis=1)                                         # [subsets]
  has_vote = counts.max(axis=1) > 0
  return has_vote & correct_per_answer[winner]


def _encode(answers: Sequence[Hashable | None], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
  """Answer ids per sample (-1 for None) and, per id, the correctness flag of its first sample."""
  ids, flags, index = [], [], {}
  for answer, ok in zip(answers, correct):
    if answer is None:
      ids.append(-1)
      continue
    if answer not in index:
      index[answer] = len(flags)
      flags.append(bool(ok))
    ids.append(index[answer])
  return np.asarray(ids, dtype=np.int64), np.asarray(flags, dtype=bool)


def maj_at_k(answers_per_problem: Sequence[Sequence[Hashable | None]],
             correct_per_answer: Sequence[Sequence[bool]], k: int, *, method: str = "auto",
             num_draws: int = 2000, seed: int = 0, max_exact_subsets: int = 20_000) -> np.ndarray:
  """Majority-vote accuracy per problem (see module docstring for voting rules and methods).

  Args:
    answers_per_problem: P sequences of n_p canonical answers (hashable or None), in sample order.
    correct_per_answer: P sequences of n_p bools, whether each sample is correct.
    k: votes per majority (1 <= k <= n_p for every problem).
    method: one of MAJ_METHODS.
    num_draws, seed: Monte-Carlo draws and numpy seed (per problem p the generator is seeded (seed, p)).
    max_exact_subsets: "auto" enumerates when C(n_p, k) is at most this.
  Returns: float64 array [P] with values in [0, 1].
  """
  if method not in MAJ_METHODS:
    raise ValueError(f"method must be one of {MAJ_METHODS}, got {method!r}")
  if len(answers_per_problem) != len(correct_per_answer):
    raise ValueError("answers_per_problem and correct_per_answer differ in length")
  out = np.zeros(len(answers_per_problem), dtype=np.float64)
  for p, (answers, correct) in enumerate(zip(answers_per_problem, correct_per_answer)):
    n = len(answers)
    if len(correct) != n:
      raise ValueError(f"problem {p}: {n} answers but {len(correct)} correctness flags")
    if not 1 <= k <= n:
      raise ValueError(f"problem {p}: need 1 <= k <= n, got k={k}, n={n}")
    ids, correct_per_answer = _encode(answers, correct)
    chosen = method
    if method == "auto":
      chosen = "exact" if math.comb(n, k) <= max_exact_subsets else "monte_carlo"
    if chosen == "first_k":
      subsets = np.arange(k)[None, :]                                     # [1, k] sample indices
    elif chosen == "exact":
      subsets = np.asarray(list(itertools.combinations(range(n), k)), dtype=np.int64)
    else:
      rng = np.random.default_rng([seed, p])
      subsets = np.sort(np.argsort(rng.random((num_draws, n)), axis=1)[:, :k], axis=1)
    out[p] = float(np.mean(_majority_correct(ids[subsets], correct_per_answer)))
  return out
