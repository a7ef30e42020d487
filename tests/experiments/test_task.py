"""The study-4 split: evaluation problems distinct and disjoint in content from every training one."""

import pytest

from experiments import task
from simko_jax.data.countdown import CountdownConfig, countdown_problem


def _content(i, cfg):
  numbers, target, _ = countdown_problem(i, cfg)
  return tuple(sorted(numbers)), target


def test_clean_split_is_content_disjoint():
  cfg = CountdownConfig(seed=0, num_numbers=(3, 3), number_range=(1, 9))
  train, evals = task.clean_split(cfg, 64)
  eval_contents = [_content(ex.index, cfg) for ex in evals]
  assert len(set(eval_contents)) == 64                              # pairwise distinct
  assert all(ex.index >= task.HELD_OUT_START for ex in evals)
  train_contents = {_content(i, cfg) for i in train}
  assert not train_contents & set(eval_contents)
  # every training index whose content is not an evaluation problem is kept
  kept = set(train)
  assert all(i in kept for i in range(0, task.TRAIN_SIZE, 97) if _content(i, cfg) not in eval_contents)
  # by index alone, most of these evaluation problems do occur among the training problems
  _, seen = task.content_overlap(cfg, evals)
  assert seen > 32


def test_clean_split_too_small_a_task_says_so():
  cfg = CountdownConfig(seed=0, num_numbers=(2, 2), number_range=(1, 2))
  with pytest.raises(ValueError, match="too small"):
    task.clean_split(cfg, 64)
