"""Generation store (torn-line repair, append-only, no duplicates), the k grid, config validation and
the benchmark loaders over the real eval files."""

import json

import pytest

from simko_jax.config import ConfigError
from simko_jax.eval.config import BENCHMARK_FILES, benchmark_names, k_values
from simko_jax.eval.harness import load_benchmarks, make_eval_config
from simko_jax.eval.store import GenerationStore, ProblemRecord
from simko_jax.eval.summary import average_over, summarize


def _rec(i, correct=(True, False)):
  n = len(correct)
  return ProblemRecord(index=i, data_source="math", ground_truth="1", responses=["r"] * n,
                       correct=list(correct), answers=["1"] * n, num_tokens=[1] * n, truncated=[False] * n)


def test_store_repairs_torn_tail_and_skips_duplicates(tmp_path):
  store = GenerationStore(str(tmp_path))
  store.append([_rec(0), _rec(1)])
  store.append([_rec(1), _rec(2)])  # 1 is already stored: skipped
  lines = (tmp_path / "generations.jsonl").read_text().splitlines()
  assert [json.loads(x)["index"] for x in lines] == [0, 1, 2]
  path = tmp_path / "generations.jsonl"
  path.write_bytes(path.read_bytes()[:-10])  # torn last line
  reopened = GenerationStore(str(tmp_path))
  assert sorted(reopened.records) == [0, 1] and reopened.num_dropped_partial == 1
  assert path.read_bytes().endswith(b"\n")
  reopened.append([_rec(2)])
  assert [json.loads(x)["index"] for x in path.read_text().splitlines()] == [0, 1, 2]
  assert reopened.records[0] == _rec(0)


def test_k_values_and_config_errors():
  assert k_values(8) == [1, 2, 4, 8]
  assert k_values(256)[-1] == 256 and len(k_values(256)) == 9
  assert k_values(300)[-2:] == [256, 300]  # the paper's AIME/AMC n=300
  assert k_values(1) == [1]
  assert k_values(16, "16,1,4,4") == [1, 4, 16]
  with pytest.raises(ConfigError, match="ks"):
    k_values(8, "16")
  with pytest.raises(ConfigError, match="benchmarks"):
    benchmark_names("math500,nope")
  assert benchmark_names("all") == list(BENCHMARK_FILES)
  with pytest.raises(ConfigError, match="temperature"):
    make_eval_config({"temperature": 0.0})
  with pytest.raises(ConfigError, match="num_samples"):
    make_eval_config({"num_samples": 0})


def test_load_every_benchmark_subset():
  cfg = make_eval_config({"num_problems": 3})
  sets = load_benchmarks(cfg)
  assert list(sets) == list(BENCHMARK_FILES)
  for name, examples in sets.items():
    assert len(examples) == 3 and all(ex.ground_truth and ex.prompt for ex in examples), name
  assert sets["gsm8k"][0].data_source == "gsm8k"


def test_summary_average_and_mixed_n():
  a = summarize([_rec(0), _rec(1, (True, True))], [1, 2])
  b = summarize([_rec(0, (False, False))], [1, 2])
  assert a["pass@k"] == {"1": 0.75, "2": 1.0} and b["pass@k"] == {"1": 0.0, "2": 0.0}
  avg = average_over({"a": a, "b": b})
  assert avg["pass@k"] == {"1": 0.375, "2": 0.5} and avg["benchmarks"] == ["a", "b"]
  assert average_over({"a": a}, ["x"]) == {}
  with pytest.raises(ValueError, match="sample counts"):
    summarize([_rec(0), _rec(1, (True,))], [1])
