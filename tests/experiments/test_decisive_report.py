"""Study 4's report regenerates from metrics.jsonl alone, and its numbers are the direct ones."""

import json
import os

import numpy as np
import ml_collections

from experiments import decisive_report, decisive_tables
from simko_jax.metrics.pass_at_k import pass_at_k


def _cfg():
  c = ml_collections.ConfigDict()
  c.methods = ml_collections.ConfigDict(dict(grpo=dict(method="grpo"), simko=dict(method="simko")))
  c.eval = ml_collections.ConfigDict(dict(num_samples=8, num_problems=6, temperature=0.6, top_p=0.95,
                                          max_new_tokens=20, bootstrap=200))
  c.rl = ml_collections.ConfigDict(dict(train=dict(steps=6)))
  return c


def _write_inputs(out, rng):
  os.makedirs(os.path.join(out, "seeds"))
  with open(os.path.join(out, "base.json"), "w") as f:
    json.dump({"counts": rng.integers(0, 9, 6).tolist(), "wall_s": 1.0}, f)
  for name in ("grpo", "simko"):
    train = [[{"step": t + 1, "reward_mean": float(rng.random()), "pass_at_group": 0.5,
               "rank1_prob": 0.6, "lambda_2": -2.0} for t in range(6)] for _ in range(3)]
    rec = {"seeds": [0, 1, 2], "method": {"method": name}, "config_hash": "h", "train": train,
           "counts": {"6": rng.integers(0, 9, (3, 6)).tolist()}, "wall_s": 1.0, "load_avg_1min": 1.0}
    with open(os.path.join(out, "seeds", f"{name}.json"), "w") as f:
      json.dump(rec, f)


def test_report_from_metrics(tmp_path):
  out = str(tmp_path)
  _write_inputs(out, np.random.default_rng(0))
  cfg = _cfg()
  meta = {"command": "x", "config": "c", "jax": "0", "machine": "m", "wall_s": 60.0,
          "warm_start": {"npz_sha256": "ab" * 32, "num_params": 10, "steps": 1, "loss_first_50": 1.0,
                         "loss_last_50": 0.5, "split": {"num_train": 100}}}
  decisive_report.write_metrics(out, cfg, meta)
  decisive_report.write(out, cfg)
  for name in ("RESULTS.md", "table.md", "pass_at_k.png", "curves.png", "summary.json"):
    assert os.path.getsize(os.path.join(out, name)) > 0
  sm = decisive_tables.summary(out)
  with open(os.path.join(out, "seeds", "simko.json")) as f:
    s = np.asarray(json.load(f)["counts"]["6"])
  with open(os.path.join(out, "seeds", "grpo.json")) as f:
    g = np.asarray(json.load(f)["counts"]["6"])
  for k in (1, 8):
    direct = 100 * (pass_at_k(np.full(18, 8), s.reshape(-1), k).mean()
                    - pass_at_k(np.full(18, 8), g.reshape(-1), k).mean())
    e = sm["ends"]["simko-grpo"][k]
    np.testing.assert_allclose(e["mean"], direct, rtol=1e-9, atol=1e-9)
    assert e["lo"] <= e["mean"] <= e["hi"]
  with open(os.path.join(out, "RESULTS.md")) as f:
    first = f.read().split("\n\n")[1]
  assert first.startswith("**Answer:") and "pass@8" in first
