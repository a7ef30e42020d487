"""Where evaluation settings come from: command line > eval config file > the run's config > default."""

import pytest

from simko_jax.eval.config import default_eval_config
from simko_jax.eval.run_settings import (command_line_fields, expected_model_config, resolve_dtypes,
                                         resolve_max_new_tokens, unknown_field_error)

RUN = {"eval": {"max_new_tokens": 4096}, "model": {"dtype": "bfloat16", "param_dtype": "float32"}}


def test_command_line_fields():
  argv = ["--config", "c.py", "--config.max_new_tokens=8", "--config.concentration.enabled", "True",
          "--checkpoint=x"]
  assert command_line_fields(argv) == {"max_new_tokens", "concentration.enabled"}
  assert unknown_field_error({"max_new_tokens", "concentration.enabled"}) is None
  assert unknown_field_error({"max_new_token"}) == ("--config.max_new_token is not a known field. "
                                                   "Did you mean --config.max_new_tokens?")


def test_max_new_tokens_precedence():
  cfg = default_eval_config()
  assert resolve_max_new_tokens(cfg, RUN, set()) == (4096, "run config eval.max_new_tokens")
  assert resolve_max_new_tokens(cfg, {}, set()) == (cfg.max_new_tokens, "eval config default")
  from simko_jax.config import default_config
  kept = {"eval": {"max_new_tokens": default_config().eval.max_new_tokens}}  # run never chose one
  assert resolve_max_new_tokens(cfg, kept, set()) == (cfg.max_new_tokens, "eval config default")
  cfg.max_new_tokens = 256  # e.g. configs/eval_quick.py
  assert resolve_max_new_tokens(cfg, RUN, set()) == (256, "eval config")
  cfg.max_new_tokens = default_eval_config().max_new_tokens  # set back to the default on the CLI
  assert resolve_max_new_tokens(cfg, RUN, {"max_new_tokens"}) == (cfg.max_new_tokens, "command line")


def test_dtypes_and_expected_model():
  cfg = default_eval_config()
  assert cfg.dtype == "auto"
  assert resolve_dtypes(cfg, RUN) == ("bfloat16", "float32")  # the trainer's compute / storage
  assert resolve_dtypes(cfg, {}) == ("float32", "float32")    # HF / GGUF sources
  cfg.dtype = "bfloat16"
  assert resolve_dtypes(cfg, RUN) == ("bfloat16", "bfloat16")
  assert expected_model_config("") is None
  assert expected_model_config("tiny_qwen2")["architectures"] == ["Qwen2ForCausalLM"]
  from simko_jax.train.checkpoint import CheckpointError
  with pytest.raises(CheckpointError, match="does not exist"):
    expected_model_config("/nonexistent/model")
