"""Each hyper-parameter is declared once (simko_jax/hparams.py) and every copy agrees with it: the config
defaults and checks, the trainer's LossHParams, the loss API's keyword defaults, and the choice lists of
config validation vs. the code that dispatches on them (loss, optimizer, model)."""

import dataclasses
import inspect

import jax.numpy as jnp
import numpy as np
import pytest

from simko_jax import hparams, losses
from simko_jax.config import FIELD_CHECKS, ConfigError, default_config, validate
from simko_jax.data.prompts import PROMPT_TEMPLATES
from simko_jax.hparams import (LossHParams, OptimizerHParams, RolloutHParams, UpdateHParams,
                               is_on_policy)
from simko_jax.metrics.concentration import concentration_metrics
from simko_jax.models.config import ATTENTION_IMPLS, PRESETS, REMAT_POLICIES, tiny_llama3
from simko_jax.rewards.registry import MATH_EXTRACTIONS
from simko_jax.train.step import make_optimizer

CLASSES = (RolloutHParams, LossHParams, UpdateHParams, OptimizerHParams)


def _get(cfg, path):
  for part in path.split("."):
    cfg = cfg[part]
  return cfg


def test_config_sections_are_exactly_the_declared_fields_with_their_defaults():
  cfg = default_config()
  declared = {}
  for cls in CLASSES:
    for path, f in cls.config_fields().items():
      assert path not in declared, f"{path} declared by {declared[path]} and {cls.__name__}"
      declared[path] = cls.__name__
      value = _get(cfg, path)
      assert value == f.default and type(value) is type(f.default), path
      assert FIELD_CHECKS[path] is f.metadata["check"], path
  config_paths = {f"{s}.{k}" for s in hparams.SECTIONS for k in cfg[s]}
  assert config_paths == set(declared)


def test_every_field_has_a_doc_and_a_check_that_accepts_its_default():
  for cls in CLASSES:
    for f in dataclasses.fields(cls):
      assert f.metadata["doc"].strip(), f"{cls.__name__}.{f.name} has no doc"
      assert f.metadata["check"].ok(f.default), f"{cls.__name__}.{f.name} default {f.default!r}"


def test_fields_read_from_another_section_share_its_default_and_check():
  owners = {p: f for cls in CLASSES for p, f in cls.config_fields().items()}
  for cls in CLASSES:
    for path, f in cls.config_keys().items():
      owner = owners[path]  # every key a class reads is declared by exactly one class
      assert f.default == owner.default and f.metadata["check"] is owner.metadata["check"], path


def test_trainer_hparams_from_the_default_config_are_the_loss_defaults():
  cfg = default_config()
  hp = LossHParams.from_config(cfg)
  assert hp.on_policy == is_on_policy(cfg) is True
  assert dataclasses.replace(hp, on_policy=False) == LossHParams()
  cfg.algo.alpha, cfg.algo.loss_chunk_size, cfg.rollout.temperature, cfg.algo.ppo_epochs = 0.3, 64, 0.7, 2
  hp = LossHParams.from_config(cfg)
  assert (hp.alpha, hp.chunk_size, hp.temperature, hp.on_policy) == (0.3, 64, 0.7, False)
  assert OptimizerHParams.from_config(cfg) == OptimizerHParams()
  assert dataclasses.asdict(RolloutHParams.from_config(cfg)) == {
      **dataclasses.asdict(RolloutHParams()), "temperature": 0.7}


# Keyword names of the loss functions that mean a LossHParams / UpdateHParams field under another name.
ALIASES = {"estimator": "kl_estimator", "mode": "gate", "eps": "adv_eps"}
LOSS_FUNCTIONS = [losses.policy_loss, losses.fused_policy_loss, losses.simko_loss, losses.grpo_loss,
                  losses.policy_loss_from_stats, losses.token_stats_from_logits,
                  losses.token_stats_from_hidden, losses.kl_penalty, losses.forking_gate,
                  losses.grpo_advantages]


@pytest.mark.parametrize("fn", LOSS_FUNCTIONS, ids=lambda fn: fn.__name__)
def test_loss_api_keyword_defaults_are_the_declared_ones(fn):
  defaults = {**dataclasses.asdict(LossHParams()), **dataclasses.asdict(UpdateHParams())}
  for name, param in inspect.signature(fn).parameters.items():
    field = ALIASES.get(name, name)
    if param.default is not inspect.Parameter.empty and field in defaults:
      assert param.default == defaults[field], f"{fn.__name__}({name}={param.default!r})"
    if name == "num_candidates":
      assert param.default == hparams.NUM_RANK_PROBS
  assert inspect.signature(concentration_metrics).parameters["num_rank_probs"].default == (
      hparams.NUM_RANK_PROBS)


def _loss_inputs(seed=0, rows=4, tokens=6, vocab=11):
  rng = np.random.default_rng(seed)
  logits = jnp.asarray(rng.normal(size=(rows, tokens, vocab)) * 2, jnp.float32)
  targets = jnp.asarray(rng.integers(0, vocab, (rows, tokens)), jnp.int32)
  old = jnp.asarray(rng.normal(size=(rows, tokens)) * 0.1 - 2.0, jnp.float32)
  return dict(logits=logits, targets=targets, old_logprobs=old, mask=jnp.ones((rows, tokens)),
              advantages=jnp.asarray([1.0, -1.0, 0.5, -0.5]))


def test_policy_loss_without_keywords_is_the_config_default_loss():
  inputs = _loss_inputs()
  loss, metrics = losses.policy_loss(**inputs)
  cfg_hp = dataclasses.replace(LossHParams.from_config(default_config()), on_policy=False)
  loss_cfg, metrics_cfg = losses.policy_loss(**inputs, hparams=cfg_hp)
  explicit = {k: v for k, v in dataclasses.asdict(cfg_hp).items()}
  loss_kw, _ = losses.policy_loss(**inputs, **explicit)
  assert float(loss) == float(loss_cfg) == float(loss_kw)
  assert metrics.keys() == metrics_cfg.keys()
  # A non-default value changes the loss, so the comparison above can fail.
  assert float(losses.policy_loss(**inputs, aggregation="seq_mean_token_sum")[0]) != float(loss)


def test_candidates_and_metrics_do_not_depend_on_the_method():
  inputs = _loss_inputs()
  keys = {}
  for method in hparams.METHODS:
    _, metrics = losses.policy_loss(**inputs, method=method, top_k=7)
    keys[method] = {k for k in metrics if k.startswith(("lambda_", "rank"))}
  assert all(k == keys["simko"] for k in keys.values())
  assert {f"lambda_{n}" for n in range(1, 8)} | {f"rank{n}_prob" for n in range(1, 6)} <= keys["grpo"]
  assert LossHParams(top_k=2).num_candidates == 5 and LossHParams(top_k=9).num_candidates == 9


def test_unknown_loss_keyword_names_the_closest_field():
  with pytest.raises(TypeError, match=r"'alpah' is not a LossHParams field. Did you mean 'alpha'\?"):
    losses.policy_loss(**_loss_inputs(), alpah=0.1)


def _accepts(fn) -> bool:
  try:
    fn()
  except (ValueError, KeyError):
    return False
  return True


def _loss_with(**kw):
  return lambda: losses.policy_loss(**_loss_inputs(), **kw)


# Config field -> a call of the code that uses the value (True = accepted).
USERS = {
    "algo.method": lambda v: _accepts(_loss_with(method=v)),
    "algo.lam_on": lambda v: _accepts(_loss_with(lam_on=v)),
    "algo.gate": lambda v: _accepts(_loss_with(gate=v)),
    "algo.aggregation": lambda v: _accepts(_loss_with(aggregation=v)),
    "algo.kl_estimator": lambda v: _accepts(
        lambda: losses.kl_penalty(jnp.zeros(3), jnp.zeros(3), v)),
    "optim.schedule": lambda v: _accepts(
        lambda: make_optimizer(dataclasses.replace(OptimizerHParams(), schedule=v), 10)),
    "model.remat": lambda v: _accepts(lambda: tiny_llama3(remat=v)),
    "model.attention_impl": lambda v: _accepts(lambda: tiny_llama3(attention_impl=v)),
    "model.random_preset": lambda v: v in PRESETS,
    "data.prompt_template": lambda v: v in PROMPT_TEMPLATES,
    "rewards.math_extraction": lambda v: v in MATH_EXTRACTIONS,
}
KNOWN = {"model.remat": REMAT_POLICIES, "model.attention_impl": ATTENTION_IMPLS,
         "model.random_preset": tuple(PRESETS), "data.prompt_template": PROMPT_TEMPLATES,
         "rewards.math_extraction": tuple(MATH_EXTRACTIONS)}


@pytest.mark.parametrize("path", sorted(USERS))
def test_config_choices_are_what_the_code_accepts(path):
  choices = FIELD_CHECKS[path].choices
  assert choices, f"{path} is not a one_of field"
  for value in choices:
    assert USERS[path](value), f"config accepts {path}={value!r}, the code refuses it"
  for value in KNOWN.get(path, ()):
    assert value in choices, f"the code accepts {path}={value!r}, config refuses it"
  assert not USERS[path]("bogus") and not FIELD_CHECKS[path].ok("bogus")


def test_every_model_remat_and_attention_value_validates():
  for path, values in (("model.remat", REMAT_POLICIES), ("model.attention_impl", ATTENTION_IMPLS)):
    for value in values:
      cfg = default_config()
      cfg.model[path.split(".")[1]] = value
      validate(cfg)
  cfg = default_config()
  cfg.model.remat = "dots"
  with pytest.raises(ConfigError, match=r"config.model.remat = 'dots' is invalid: allowed one of"):
    validate(cfg)


def test_old_loss_config_name_warns_and_is_loss_hparams():
  from simko_jax.train import step  # noqa: PLC0415
  with pytest.warns(DeprecationWarning, match="LossHParams"):
    assert step.LossConfig is LossHParams
