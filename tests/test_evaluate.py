"""The evaluation harness end to end: exact pass@k/maj@k on a fake generator, resumability after a
crash and after a torn write, a tiny random model on 10 real MATH500 problems, and the CLI."""

import itertools
import json
import os
from collections import Counter
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from simko_jax.eval.generation import Generation
from simko_jax.evaluate import evaluate
from simko_jax.rewards.pool import VerifierPool
from tests.eval.helpers import FakeGenerate, byte_tokenizer, tiny_model, toy_examples
from tests.cli import assert_one_line_error, run_module

N = 8
CORRECT = {0: 0, 1: 1, 2: 3, 3: 8, 4: 5, 5: 2, 6: 7}  # problem -> correct samples out of N
CFG = {"num_samples": N, "batch_problems": 2, "num_workers": 1, "progress": False}


@pytest.fixture(scope="module")
def pool():
  with VerifierPool(num_workers=1, timeout_s=10.0, default_source="math") as p:
    yield p


def _brute_maj(answers, correct, k: int) -> float:
  """Majority-vote accuracy averaged over all k-subsets (ties: earliest first occurrence wins)."""
  wins, subsets = 0, list(itertools.combinations(range(len(answers)), k))
  for subset in subsets:
    votes = [answers[i] for i in subset if answers[i] is not None]
    if votes:
      winner = Counter(votes).most_common(1)[0][0]
      wins += correct[answers.index(winner)]
  return wins / len(subsets)


def test_fake_generator_gives_exact_pass_at_k(tmp_path, pool):
  examples = toy_examples(len(CORRECT))
  fake = FakeGenerate(N, CORRECT)
  res = evaluate(None, None, {"toy": examples}, CFG, str(tmp_path), generate_fn=fake, pool=pool,
                 log=lambda s: None)
  m = res["benchmarks"]["toy"]
  assert m["num_problems"] == 7 and m["num_samples"] == N
  assert list(m["pass@k"]) == ["1", "2", "4", "8"]
  for k in (1, 2, 4, 8):
    want = sum(1 - Fraction(comb(N - c, k), comb(N, k)) for c in CORRECT.values()) / len(CORRECT)
    assert m["pass@k"][str(k)] == pytest.approx(float(want), abs=1e-12), k
  assert m["pass@k"]["1"] == pytest.approx(sum(CORRECT.values()) / (N * 7))
  assert m["truncated_frac"] == pytest.approx(1 / N)
  assert m["mean_response_tokens"] == pytest.approx(np.mean([3 + j for j in range(N)]))
  # maj@k against brute-force enumeration over the stored sample order.
  records = [json.loads(line) for line in (tmp_path / "toy" / "generations.jsonl").read_text().splitlines()]
  for k in (1, 2, 4, 8):
    want = np.mean([_brute_maj(r["answers"], r["correct"], k) for r in records])
    assert m["maj@k"][str(k)] == pytest.approx(want, abs=1e-12), k
  assert m["maj@k"]["1"] == pytest.approx(m["pass@k"]["1"])
  # Files: one line per problem, metrics.json, results.json/md with the table.
  lines = (tmp_path / "toy" / "generations.jsonl").read_text().splitlines()
  assert sorted(json.loads(line)["index"] for line in lines) == [100 + i for i in range(7)]
  rec = json.loads(lines[0])
  assert len(rec["responses"]) == N and len(rec["correct"]) == N and rec["answers"][0] is not None
  assert json.loads((tmp_path / "toy" / "metrics.json").read_text()) == m
  table = (tmp_path / "results.md").read_text()
  assert "| toy | run | 7 | 8 |" in table and f"{100 * m['pass@k']['1']:.1f}" in table
  assert json.loads((tmp_path / "results.json").read_text())["run"]["sampled_problems"] == {"toy": 7}


def test_resume_after_crash_and_torn_write(tmp_path, pool):
  examples = toy_examples(len(CORRECT))
  full = evaluate(None, None, {"toy": examples}, CFG, str(tmp_path / "full"),
                  generate_fn=FakeGenerate(N, CORRECT), pool=pool, log=lambda s: None)
  # Crash on the 3rd sampler call: batches 0 and 1 (4 problems) are on disk.
  crashing = FakeGenerate(N, CORRECT, fail_after=2)
  with pytest.raises(RuntimeError, match="simulated crash"):
    evaluate(None, None, {"toy": examples}, CFG, str(tmp_path / "run"), generate_fn=crashing, pool=pool,
             log=lambda s: None)
  path = tmp_path / "run" / "toy" / "generations.jsonl"
  assert len(path.read_text().splitlines()) == 4
  # Tear the last line (as if killed mid-write): problem 103 must be resampled, the others not.
  data = path.read_bytes()
  path.write_bytes(data[:data.rstrip(b"\n").rfind(b"\n") + 1 + 40])
  resumed = FakeGenerate(N, CORRECT)
  res = evaluate(None, None, {"toy": examples}, CFG, str(tmp_path / "run"), generate_fn=resumed, pool=pool,
                 log=lambda s: None)
  assert res["benchmarks"] == full["benchmarks"]
  assert res["run"]["sampled_problems"] == {"toy": 4}  # 103 (torn) + 104, 105, 106
  lines = path.read_text().splitlines()
  assert sorted(json.loads(line)["index"] for line in lines) == [100 + i for i in range(7)]
  # The resumed run re-drew batch 1 with the same seed (problem 102 is re-drawn but not stored again).
  sampled = [p for p, _ in resumed.calls]
  assert not any("problem 0:" in p or "problem 1:" in p for p in sampled)
  # Third run: nothing left to do, no sampler call at all.
  idle = FakeGenerate(N, CORRECT, fail_after=0)
  again = evaluate(None, None, {"toy": examples}, CFG, str(tmp_path / "run"), generate_fn=idle, pool=pool,
                   log=lambda s: None)
  assert again["benchmarks"] == full["benchmarks"] and again["run"]["sampled_problems"] == {"toy": 0}
  with pytest.raises(ValueError, match="other settings"):  # resuming under other settings is refused
    evaluate(None, None, {"toy": examples}, dict(CFG, temperature=1.0), str(tmp_path / "run"),
             generate_fn=idle, pool=pool, log=lambda s: None)


def test_tiny_random_model_on_math500_end_to_end(tmp_path, pool):
  model, tok = tiny_model(), byte_tokenizer()
  cfg = {"benchmarks": "math500", "num_problems": 10, "num_samples": 4, "max_new_tokens": 8,
         "max_prompt_len": 48, "batch_problems": 4, "progress": False, "temperature": 0.6, "top_p": 0.95}
  res = evaluate(model, tok, None, cfg, str(tmp_path), pool=pool, log=lambda s: None)
  m = res["benchmarks"]["math500"]
  assert m["num_problems"] == 10 and m["num_samples"] == 4
  assert m["pass@k"] == {"1": 0.0, "2": 0.0, "4": 0.0}  # 8 random bytes never box the right answer
  assert 1 <= m["mean_response_tokens"] <= 8 and 0.0 <= m["truncated_frac"] <= 1.0
  path = tmp_path / "math500" / "generations.jsonl"
  lines = path.read_text().splitlines()
  assert len(lines) == 10
  rec = json.loads(lines[0])
  assert all(1 <= t <= 8 for t in rec["num_tokens"])
  assert all(t == (n == 8) or n == 8 for t, n in zip(rec["truncated"], rec["num_tokens"]))
  table = (tmp_path / "results.md").read_text()
  assert "| math500 | run | 10 | 4 | 0.0 | 0.0 | 0.0 |" in table
  # Resume with the real sampler: cut the file mid-line 7, rerun -> identical records and metrics.
  data = path.read_bytes()
  cut = len(b"".join(data.splitlines(keepends=True)[:6])) + 25
  path.write_bytes(data[:cut])
  res2 = evaluate(model, tok, None, cfg, str(tmp_path), pool=pool, log=lambda s: None)
  assert res2["benchmarks"] == res["benchmarks"]
  assert res2["run"]["sampled_problems"] == {"math500": 4}
  assert path.read_bytes() == data  # the same samples were redrawn (fixed per-batch seeds)


def test_cli_on_hf_dir(tmp_path):
  """`python -m simko_jax.evaluate` on a tiny HF checkpoint dir, with config-file overrides."""
  import subprocess
  import sys

  from simko_jax.models import save_hf
  model, tok = tiny_model(), byte_tokenizer()
  ckpt = tmp_path / "ckpt"
  save_hf(model, str(ckpt))
  tok._backend.save(str(ckpt / "tokenizer.json"))
  (ckpt / "tokenizer_config.json").write_text(json.dumps(
      {"chat_template": tok.chat_template, "eos_token": "<|im_end|>", "pad_token": "<pad>"}))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "simko_jax.evaluate", "--config", os.path.join(root, "configs/eval_default.py"),
         "--checkpoint", str(ckpt), "--config.benchmarks=gsm8k", "--config.num_problems=3",
         "--config.num_samples=2", "--config.max_new_tokens=4", "--config.max_prompt_len=32",
         "--config.batch_problems=1", "--config.num_workers=1", "--config.progress=False",
         f"--config.out_dir={tmp_path / 'out'}", "--config.concentration.enabled=True",
         "--config.concentration.num_prompts=2", "--config.concentration.num_samples=2",
         "--config.concentration.max_new_tokens=4"]
  proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((tmp_path / "out" / "results.json").read_text())
  assert res["benchmarks"]["gsm8k"]["num_problems"] == 3
  assert res["config"]["batch_problems"] == 1  # the override; the mesh (2 devices) rounds batches to 2
  assert res["metadata"]["checkpoint"] == str(ckpt) and res["metadata"]["dtype"] == "float32"
  assert res["metadata"]["mesh"] == {"data": 2, "fsdp": 1, "tensor": 1}
  assert res["config"]["max_new_tokens"] == 4 and res["metadata"]["max_new_tokens_from"] == "command line"
  assert len((tmp_path / "out" / "gsm8k" / "generations.jsonl").read_text().splitlines()) == 3
  conc = json.loads((tmp_path / "out" / "concentration.json").read_text())
  assert 0 < conc["rank1_prob"] <= 1 and conc["num_prompts"] == 2
  assert "| gsm8k |" in proc.stdout


def _cli(*args, timeout=120):
  return run_module("simko_jax.evaluate", "--config", "configs/eval_quick.py", *args, timeout=timeout)


def test_cli_bad_input_is_one_line(tmp_path):
  """Missing checkpoint, run without a complete checkpoint, another model than the config expects,
  unknown flags and an unwritable out_dir: `error: ...`, exit 1, no traceback, nothing written."""
  from tests.eval.run_helpers import write_tiny_run
  run = write_tiny_run(tmp_path / "run", tiny_model(), byte_tokenizer())
  out = f"--config.out_dir={tmp_path / 'out'}"
  assert_one_line_error(_cli("--checkpoint", str(tmp_path / "nope"), out), "does not exist")
  (tmp_path / "fresh" / "checkpoints").mkdir(parents=True)
  assert_one_line_error(_cli("--checkpoint", str(tmp_path / "fresh"), out), "no complete checkpoint")
  assert_one_line_error(_cli("--checkpoint", run, out, "--config.expect_model=tiny_qwen2"),
                         "different model", "architectures")
  assert_one_line_error(_cli("--checkpoint", run, out, "--bogus=1"), "bogus")
  assert_one_line_error(_cli("--checkpoint", run, out, "--config.bogus=1"), "bogus")
  (tmp_path / "a_file").write_text("x")
  assert_one_line_error(_cli("--checkpoint", run, f"--config.out_dir={tmp_path / 'a_file' / 'sub'}"),
                         "config.out_dir", "not writable")
  assert not (tmp_path / "out").exists()


class PerCallN:
  """A `GenerateFn` honouring the n it is asked for: problem i gets min(i, n) correct boxed answers."""

  def __init__(self):
    self.ns = []

  def __call__(self, prompts, seed, n):
    self.ns.append(n)
    out = []
    for prompt in prompts:
      i = int(prompt.split(":")[0].split()[-1])
      out.append([Generation(f"\\boxed{{{2 * i if j < i else -1}}}", 4, False) for j in range(n)])
    return out


def test_n_per_benchmark_and_pass_at_k_up_to_n(tmp_path, pool):
  """The paper's protocol: 300 samples for AIME/AMC, 256 elsewhere (here 6 and 4): each benchmark is
  sampled with its own n and reports unbiased pass@k for k = 1, 2, 4, ... and n itself."""
  examples = toy_examples(5)
  fake = PerCallN()
  cfg = dict(CFG, num_samples=4, num_samples_by_benchmark="aime24:6")
  res = evaluate(None, None, {"aime24": examples, "math500": examples}, cfg, str(tmp_path),
                 generate_fn=fake, pool=pool, log=lambda s: None)
  assert sorted(set(fake.ns)) == [4, 6]
  for name, n, ks in (("aime24", 6, ["1", "2", "4", "6"]), ("math500", 4, ["1", "2", "4"])):
    m = res["benchmarks"][name]
    assert m["num_samples"] == n and list(m["pass@k"]) == ks
    for k in map(int, ks):
      want = sum(1 - Fraction(comb(n - min(i, n), k), comb(n, k)) for i in range(5)) / 5
      assert m["pass@k"][str(k)] == pytest.approx(float(want), abs=1e-12)
    assert json.loads((tmp_path / name / "sampling.json").read_text())["num_samples"] == n
  with pytest.raises(Exception, match="num_samples_by_benchmark"):
    evaluate(None, None, {"aime24": examples}, dict(cfg, num_samples_by_benchmark="aime24=300"),
             str(tmp_path / "bad"), generate_fn=fake, pool=pool, log=lambda s: None)


def test_paper_eval_config_values():
  from configs.eval_default import get_config
  from simko_jax.eval.config import samples_for
  c = get_config()
  assert (c.max_new_tokens, c.temperature, c.top_p, c.num_samples) == (4096, 0.6, 0.95, 256)
  assert [samples_for(c, b) for b in ("aime24", "aime25", "amc23", "math500", "minerva")] == \
      [300, 300, 300, 256, 256]
