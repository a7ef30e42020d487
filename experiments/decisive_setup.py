"""Study 4's fixed starting point: the clean split and the committed warm start.

`setup(cfg, out, log)` -> (graphdef, warm params, warm-start info, train indices, eval examples):
  * the clean split (`task.clean_split`): `cfg.eval.num_problems` evaluation problems disjoint in
    content from every training problem (asserted there);
  * the warm start trained by `simko_jax.train.sft` on the training problems only, cached in `out` as
    `warm_start.npz` (float32, committed: every rerun starts from these exact params) and
    `warm_start.json` (config hash, sha256 of the npz, loss curve).
"""

from __future__ import annotations

import hashlib
import json
import os

from experiments import common, task


def split_description(cfg, train_indices, eval_examples) -> dict:
  """What the split is (part of the warm start's config hash)."""
  return {"split": "clean", "num_eval": len(eval_examples), "num_train": len(train_indices),
          "first_eval_index": eval_examples[0].index, "last_eval_index": eval_examples[-1].index}


def _hash_of(directory: str):
  with open(os.path.join(directory, "warm_start.json")) as f:
    return json.load(f).get("hash")


def sha256_of(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def setup(cfg, out: str, log=print, warm_dirs=()):
  tcfg = task.task_config(cfg.task)
  train_indices, eval_examples = task.clean_split(tcfg, cfg.eval.num_problems)
  split = split_description(cfg, train_indices, eval_examples)
  pairs = lambda step, b: task.sft_pairs_from(tcfg, train_indices, step, b, cfg.sft.seed)
  dirs = [d for d in (*warm_dirs, out) if d and os.path.isfile(os.path.join(d, "warm_start.json"))]
  graphdef, params, info = common.warm_start(cfg, [*dirs, out], log, make_pairs=pairs, split=split)
  where = next((d for d in dirs if _hash_of(d) == info["hash"]), out)
  meta = os.path.join(where, "warm_start.json")
  digest = sha256_of(os.path.join(where, "warm_start.npz"))
  if info.get("npz_sha256") not in (None, digest):
    raise SystemExit(f"error: {where}/warm_start.npz does not match the sha256 in warm_start.json "
                     f"({digest[:12]} != {info['npz_sha256'][:12]}); restore it with git checkout")
  if "npz_sha256" not in info:
    info.update(npz_sha256=digest, split=split)
    with open(meta, "w") as f:
      json.dump(info, f, indent=1)
  return graphdef, params, info, train_indices, eval_examples
