"""Rewards of one rollout batch: on device (`rewards.on_device.DeviceReward`, one jitted call over token ids)
vs today's host path (decode with the tokenizer + `VerifierPool.score`), same responses, same rewards.

    python benchmarks/rewards.py --rows 512 --response_tokens 128 --repeats 3 [--max_chars 1024]

Responses: SmolLM2-tokenized reasoning-like texts for the procedural tasks (arith "boxed", arith "plain",
countdown), half of them correct. Prints a table and one JSON line; times are warm (best of `--repeats`),
compilation is reported separately.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import jax
import numpy as np

from simko_jax.data.arith_task import arith_example
from simko_jax.data.countdown import countdown_example, countdown_problem
from simko_jax.models import Tokenizer, smollm2_gguf_path
from simko_jax.rewards.on_device import DeviceReward
from simko_jax.rewards.pool import VerifierPool
from simko_jax.train.tasks import arith_config

_FILLER = "Let me work through this step by step, keeping track of every intermediate value carefully. "


def _batch(task: str, rows: int, rng: random.Random):
  """(responses, ground truths, data source) for `rows` examples of `task`."""
  responses, truths = [], []
  for i in range(rows):
    if task == "countdown":
      example = countdown_example(i)
      numbers, target, solution = countdown_problem(i)
      answer = solution if rng.random() < 0.5 else f"{numbers[0]} + {numbers[-1]}"
      responses.append(_FILLER * rng.randint(1, 3) + f"So the answer is <answer>{answer}</answer>.")
    else:
      example = arith_example(i, arith_config(4, 0))
      value = int(example.ground_truth) + (0 if rng.random() < 0.5 else 1)
      tail = f"\\boxed{{{value}}}" if task == "boxed" else f"The result is {value}."
      responses.append(_FILLER * rng.randint(1, 3) + tail)
    truths.append(example.ground_truth)
  return responses, truths, {"boxed": "arith", "plain": "arith_plain", "countdown": "countdown"}[task]


def _best(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--rows", type=int, default=512)
  parser.add_argument("--response_tokens", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--max_chars", type=int, default=0,
                      help="code points the device verifier sees (0: DeviceReward's exact default, "
                           "min(R * longest token, 20000)); a smaller value = the pool with that max_response_chars")
  args = parser.parse_args()
  tokenizer = Tokenizer.from_gguf(smollm2_gguf_path())
  rng = random.Random(0)
  results = []
  with VerifierPool(num_workers=args.workers, timeout_s=5.0) as pool:
    for task in ("boxed", "plain", "countdown"):
      responses, truths, source = _batch(task, args.rows, rng)
      ids = [tokenizer.encode(r)[:args.response_tokens] for r in responses]
      tokens = np.zeros((args.rows, args.response_tokens), np.int32)
      mask = np.zeros_like(tokens)
      for row, row_ids in enumerate(ids):
        tokens[row, :len(row_ids)], mask[row, :len(row_ids)] = row_ids, 1
      reward = DeviceReward(task, tokenizer, max_chars=args.max_chars or None)
      truth = reward.prepare(truths)
      step = jax.jit(lambda t, m, tr: reward(t, m, tr)["rewards"])
      start = time.perf_counter()
      compiled = step.lower(tokens, mask, truth).compile()
      compile_s = time.perf_counter() - start
      device = np.asarray(compiled(tokens, mask, truth))
      device_s = _best(lambda: jax.block_until_ready(compiled(tokens, mask, truth)), args.repeats)

      def host():
        texts = [tokenizer.decode(row[m > 0], skip_special_tokens=True) for row, m in zip(tokens, mask)]
        return np.asarray(pool.score([(t, g, source) for t, g in zip(texts, truths)]), np.float32)

      host_rewards = host()
      host_s = _best(host, args.repeats)
      assert (device == host_rewards).all(), f"{task}: device and host rewards differ"
      results.append({"task": task, "rows": args.rows, "response_tokens": args.response_tokens,
                      "max_chars": args.max_chars or min(args.response_tokens * reward.table.max_token_bytes, 20000),
                      "mean_reward": float(device.mean()), "device_s": round(device_s, 4),
                      "host_pool_s": round(host_s, 4), "compile_s": round(compile_s, 2)})
  print("| task | rows x tokens | max_chars | mean reward | on device (s) | host decode + pool (s) | compile (s) |")
  print("|---|---|---|---|---|---|---|")
  for r in results:
    print(f"| {r['task']} | {r['rows']} x {r['response_tokens']} | {r['max_chars']} | {r['mean_reward']:.2f} | "
          f"{r['device_s']} | {r['host_pool_s']} | {r['compile_s']} |")
  print(json.dumps({"benchmark": "rewards", "devices": str(jax.devices()[0].platform), "results": results}))


if __name__ == "__main__":
  main()
