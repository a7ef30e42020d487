"""Evaluation configuration (ml_collections), the benchmark registry and the k grid.

`default_eval_config()` lists every field with its default; `configs/eval_*.py` start from it and
`--config.x=y` overrides it on the command line. `validate_eval_config` raises `ConfigError` naming the
field, the value and the allowed range (the same error type as the training config).
"""

from __future__ import annotations

import os

import ml_collections

from simko_jax.config import ConfigError
from simko_jax.data.prompts import PROMPT_TEMPLATES
from simko_jax.hparams import RolloutHParams
from simko_jax.rewards.registry import MATH_EXTRACTIONS

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "eval")

# Benchmark name -> file under the eval data dir. Order = report order.
BENCHMARK_FILES = {
    "math500": "math500.parquet",
    "aime24": "aime24.jsonl",
    "aime25": "aime25.parquet",
    "amc23": "amc23.parquet",
    "minerva": "minerva_math.jsonl",
    "olympiadbench": "olympiadbench.jsonl",
    "gsm8k": "gsm8k_test.jsonl",
}
# The SimKO paper's six-benchmark average (SIMKO_METHOD.md §9) excludes GSM8K.
PAPER_BENCHMARKS = ("aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench")


def default_eval_config() -> ml_collections.ConfigDict:
  """Every evaluation field with its default (the paper's protocol: n=256, T=0.6, top-p 0.95, up to 4096
  new tokens; `configs/eval_default.py` adds its prompt and n=300 for AIME / AMC)."""
  c = ml_collections.ConfigDict()
  c.benchmarks = "all"            # "all" or comma-separated names from BENCHMARK_FILES
  c.data_dir = ""                 # "" = /work/shared/data/eval (../shared/data/eval from the repo root)
  c.num_problems = 0              # first N problems of each benchmark; 0 = all
  c.num_samples = 256             # n responses per problem
  c.num_samples_by_benchmark = ""  # per-benchmark n, "aime24:300,amc23:300"; others use num_samples
  c.temperature = 0.6
  c.top_p = 0.95
  c.top_k = 0                     # 0 = off
  c.max_new_tokens = 4096          # the paper's evaluation budget (training uses 3072)
  c.max_prompt_len = 1024         # longer prompts are cut from the left
  c.batch_problems = 8            # problems per sampler call (rounded up to a multiple of the data axes)
  c.chat = True                   # False = prompt_template "plain" (kept for older configs)
  c.system_prompt = ""            # these three = the training config's data.system_prompt,
  c.prompt_suffix = ""            # data.prompt_suffix and data.prompt_template (data/prompts.py)
  c.prompt_template = "chat"      # "chat" | "plain" | "qwen_chatml"
  c.seed = 0
  c.ks = ""                       # "" = 1, 2, 4, ..., n (plus n); else comma-separated ints
  c.maj_method = "auto"           # see simko_jax.metrics.maj_at_k
  c.num_workers = 2               # verifier processes
  c.timeout_s = 5.0               # per-answer verifier timeout
  c.out_dir = "runs/eval"
  c.progress = True               # tqdm progress bar with ETA
  # CLI model placement and precision (simko_jax/evaluate.py), built like the trainer's (config.train.mesh_*):
  c.mesh_data = -1                # -1 = all devices not used by fsdp x tensor
  c.mesh_fsdp = 1                 # params sharded over this axis by the training logical-axis rules
  c.mesh_tensor = 1               # tensor-parallel size (must divide the devices of one process)
  c.dtype = "auto"                # compute dtype: "auto" = the checkpoint run's model.dtype (else float32)
  c.truncated_is_wrong = False    # a response cut by max_new_tokens counts as wrong
  c.expect_model = ""             # CLI: "" or a preset / HF dir / .gguf the checkpoint must match
  c.math_extraction = "boxed"     # "boxed" | "boxed_answer_is_number" (= config.rewards.math_extraction)

  c.concentration = ml_collections.ConfigDict()
  c.concentration.enabled = False
  c.concentration.benchmark = "math500"   # the fixed prompt set: first num_prompts problems
  c.concentration.num_prompts = 16
  c.concentration.num_samples = 4
  c.concentration.max_new_tokens = 256
  c.concentration.temperature = 1.0       # sampling AND teacher-forced stats (the trainer's convention)
  c.concentration.forward_rows = 8        # rows B per teacher-forced forward (bounds [B, T, V] logits)
  return c


def _fail(field: str, value, allowed: str) -> None:
  raise ConfigError(f"config.{field} = {value!r} is invalid: expected {allowed}.")


def benchmark_names(spec) -> list[str]:
  """Benchmark names from "all", a comma-separated string, or a list; unknown names raise ConfigError."""
  if isinstance(spec, str):
    names = list(BENCHMARK_FILES) if spec.strip().lower() == "all" else [
        s.strip().lower() for s in spec.split(",") if s.strip()]
  else:
    names = [str(s).lower() for s in spec]
  unknown = [s for s in names if s not in BENCHMARK_FILES]
  if unknown or not names:
    _fail("benchmarks", spec, f"'all' or a comma-separated subset of {list(BENCHMARK_FILES)}")
  return names


def samples_by_benchmark(spec: str) -> dict[str, int]:
  """"aime24:300, amc23:300" -> {"aime24": 300, "amc23": 300}; ConfigError on a malformed entry."""
  out = {}
  for item in str(spec or "").split(","):
    if not item.strip():
      continue
    name, _, value = item.partition(":")
    name = name.strip().lower()
    if not value.strip().isdigit() or int(value) < 1 or not name:
      _fail("num_samples_by_benchmark", spec, "comma-separated name:n entries with n >= 1, "
            "e.g. 'aime24:300,amc23:300'")
    out[name] = int(value)
  return out


def samples_for(cfg, benchmark: str) -> int:
  """n for `benchmark`: its `num_samples_by_benchmark` entry, else `num_samples`."""
  return samples_by_benchmark(cfg.num_samples_by_benchmark).get(benchmark.lower(), int(cfg.num_samples))


def k_values(n: int, spec: str = "") -> list[int]:
  """The k grid for n samples: 1, 2, 4, ... <= n, plus n itself (e.g. n=300 -> ..., 256, 300);
  or the comma-separated `spec` (each 1 <= k <= n), sorted and de-duplicated."""
  if spec:
    ks = sorted({int(s) for s in str(spec).split(",") if s.strip()})
    if not ks or ks[0] < 1 or ks[-1] > n:
      _fail("ks", spec, f"comma-separated integers in [1, num_samples={n}]")
    return ks
  ks, k = [], 1
  while k <= n:
    ks.append(k)
    k *= 2
  return ks if ks[-1] == n else ks + [n]


def validate_eval_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Range checks of every field that could fail late (after the model is loaded)."""
  benchmark_names(c.benchmarks)
  for field in ("num_samples", "max_new_tokens", "max_prompt_len", "batch_problems", "num_workers"):
    if not isinstance(c[field], int) or isinstance(c[field], bool) or c[field] < 1:
      _fail(field, c[field], "an integer >= 1")
  if not isinstance(c.num_problems, int) or c.num_problems < 0:
    _fail("num_problems", c.num_problems, "an integer >= 0 (0 = all problems)")
  for field in ("temperature", "top_p", "top_k"):  # the sampler's ranges, as for training rollouts
    check = RolloutHParams.check(field)
    if not check.ok(c[field]):
      _fail(field, c[field], check.allowed)
  if float(c.timeout_s) <= 0:
    _fail("timeout_s", c.timeout_s, "a number > 0")
  if c.maj_method not in ("first_k", "exact", "monte_carlo", "auto"):
    _fail("maj_method", c.maj_method, "one of first_k, exact, monte_carlo, auto")
  for n in {c.num_samples, *samples_by_benchmark(c.num_samples_by_benchmark).values()}:
    k_values(n, c.ks)
  if c.prompt_template not in PROMPT_TEMPLATES:
    _fail("prompt_template", c.prompt_template, f"one of {list(PROMPT_TEMPLATES)}")
  if c.math_extraction not in MATH_EXTRACTIONS:
    _fail("math_extraction", c.math_extraction, f"one of {list(MATH_EXTRACTIONS)}")
  if c.dtype not in ("auto", "float32", "bfloat16"):
    _fail("dtype", c.dtype, "one of auto, float32, bfloat16")
  if not isinstance(c.mesh_data, int) or (c.mesh_data < 1 and c.mesh_data != -1):
    _fail("mesh_data", c.mesh_data, "an integer >= 1, or -1 (all remaining devices)")
  for field in ("mesh_fsdp", "mesh_tensor"):
    if not isinstance(c[field], int) or isinstance(c[field], bool) or c[field] < 1:
      _fail(field, c[field], "an integer >= 1")
  cc = c.concentration
  for field in ("num_prompts", "num_samples", "max_new_tokens", "forward_rows"):
    if not isinstance(cc[field], int) or cc[field] < 1:
      _fail(f"concentration.{field}", cc[field], "an integer >= 1")
  if cc.benchmark not in BENCHMARK_FILES:
    _fail("concentration.benchmark", cc.benchmark, f"one of {list(BENCHMARK_FILES)}")
  return c


def resolve_data_dir(data_dir: str) -> str:
  """`data_dir`, or the shared eval data directory (next to the repository) when empty."""
  if data_dir:
    return data_dir
  for candidate in (os.path.normpath(DEFAULT_DATA_DIR), "/work/shared/data/eval",
                    os.path.join(os.getcwd(), "..", "shared", "data", "eval")):
    if os.path.isdir(candidate):
      return candidate
  raise FileNotFoundError("cannot find the eval data directory; set --config.data_dir")
