"""A trained or pretrained policy as an inference source: what `evaluate` and `export` load.

  src = locate("runs/simko")                    # a trainer run dir, its checkpoints/ dir, a HF dir,
                                                 # a .gguf file, "smollm2" or a Hub id
                                                 # org/name[@revision]; gs:// paths work
  model = load_model(src, dtype=jnp.bfloat16, mesh=mesh)   # params restored straight into their shards
  tokenizer = load_tokenizer_of(src)

For a trainer checkpoint only the `params` item of step `src.step` is read (no optimizer state), onto
the shardings the training logical-axis rules give on `mesh` (`simko_jax.parallel.model_shardings`), so
no host ever holds the whole model. The tokenizer comes from `<checkpoints>/tokenizer/` (written once
per run by the trainer); checkpoints written before that existed fall back to the source recorded in
their meta ("char" or the original model path), with a clear error when that is gone.
Every failure is a `CheckpointError` (or, for damaged model files and Hub failures, a `ModelLoadError`)
whose message names the path and the fix.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from etils import epath

from simko_jax.models.hf_io import read_hf_config
from simko_jax.train.checkpoint import CheckpointError, _check_model

TOKENIZER_DIR = "tokenizer"  # under <out_dir>/checkpoints/
WHAT = ("a trainer run dir, its checkpoints/ dir, a HF model dir, a .gguf file, 'smollm2' or a Hub id "
        "org/name[@revision]")


@dataclasses.dataclass(frozen=True)
class PolicySource:
  """Where a policy lives. kind: "run" (Orbax trainer checkpoint; `path` = its checkpoints dir),
  "hf" or "gguf" (`path` = the dir / file). `model_config`: HF-style config dict. `meta`: the step's
  meta item (run config under "config"); {} for hf/gguf. `step`: None for hf/gguf."""
  kind: str
  path: str
  step: int | None
  model_config: dict
  meta: dict

  @property
  def train_config(self) -> dict:
    """The training run's config as a nested dict ({} when not a trainer checkpoint)."""
    return dict(self.meta.get("config") or {})


def locate(path: str, step: int | None = None) -> PolicySource:
  """Resolve `path` (see module doc) and read its config; CheckpointError when it cannot be used."""
  from simko_jax.train.model_source import resolve_named
  path = resolve_named(path) or path  # "smollm2" / a Hub id (into HF_HUB_CACHE); gs:// stays remote
  p = epath.Path(path)
  if not p.exists():
    raise CheckpointError(f"checkpoint {path!r} does not exist: give {WHAT}")
  if p.is_file() and p.name.endswith(".gguf"):
    from simko_jax.models.gguf_io import gguf_config, open_gguf
    return PolicySource("gguf", str(p), None, gguf_config(open_gguf(str(p))).to_hf_config(), {})
  if (p / "config.json").exists():
    return PolicySource("hf", str(p), None, read_hf_config(str(p)), {})
  ckpt_dir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
  step, meta = _read_meta(ckpt_dir, step)
  if not meta.get("model_config"):
    raise CheckpointError(f"checkpoint step {step} in {str(ckpt_dir)!r} has no model_config in its meta "
                          "item: it was not written by simko_jax.main")
  return PolicySource("run", str(ckpt_dir), step, dict(meta["model_config"]), meta)


def _manager(ckpt_dir: epath.Path):
  import orbax.checkpoint as ocp
  # Not read_only=True: that option logs two warnings per call; this manager never saves anyway.
  return ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(create=False))


def _read_meta(ckpt_dir: epath.Path, step: int | None) -> tuple[int, dict]:
  import orbax.checkpoint as ocp
  manager = _manager(ckpt_dir)
  steps = sorted(manager.all_steps())
  if not steps:
    raise CheckpointError(f"no complete checkpoint in {str(ckpt_dir)!r}: give {WHAT} (a run saves "
                          "its first checkpoint after config.checkpoint.every steps)")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise CheckpointError(f"step {step} is not a complete checkpoint in {str(ckpt_dir)!r}: "
                          f"available steps {steps}")
  try:
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  except Exception as err:  # noqa: BLE001 - any unreadable meta item means the same to the user
    raise CheckpointError(f"cannot read the meta item of step {step} in {str(ckpt_dir)!r} "
                          f"({type(err).__name__}: {str(err)[:200]}): pick another --step") from err
  return step, dict(meta)


def check_model(source: PolicySource, expected: dict | None) -> None:
  """CheckpointError when `source` is another model than the HF-style config `expected` describes."""
  _check_model({"model_config": source.model_config}, expected, source.path)


def load_model(source: PolicySource, *, dtype: Any = None, param_dtype: Any = None, mesh=None):
  """The `Transformer` of `source`: compute `dtype` (default float32), params stored in `param_dtype`
  (default: `dtype`), placed on `mesh` by the training logical-axis rules (None: one device)."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from simko_jax.models import load_pretrained
  from simko_jax.models.config import ModelConfig
  from simko_jax.models.loading import abstract_model

  dtype = jnp.float32 if dtype is None else dtype
  param_dtype = dtype if param_dtype is None else param_dtype
  if source.kind != "run":
    model = load_pretrained(source.path, dtype=dtype, param_dtype=param_dtype, mesh=mesh)
    return model
  cfg = ModelConfig.from_hf_config(source.model_config, dtype=dtype, param_dtype=param_dtype)
  model = abstract_model(cfg)
  graphdef, abstract = nnx.split(model, nnx.Param)
  target = _restore_target(abstract, mesh)
  import orbax.checkpoint as ocp

  from simko_jax.train import checkpoint_layout
  unfused = checkpoint_layout.saved_layers_unfused(epath.Path(source.path) / str(source.step))
  try:
    restored = _manager(epath.Path(source.path)).restore(source.step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(checkpoint_layout.unfused_target(cfg, target) if unfused else target)))
  except Exception as err:  # noqa: BLE001
    raise CheckpointError(f"cannot read the params of step {source.step} in {source.path!r} "
                          f"({type(err).__name__}: {str(err)[:300]}): pick another --step") from err
  params = restored["params"]
  if unfused:  # written before the fused decoder layout: converted here, exactly
    params = checkpoint_layout.convert_to_fused(cfg, params, target)
  nnx.replace_by_pure_dict(abstract, params)
  return nnx.merge(graphdef, abstract)


def _restore_target(abstract, mesh):
  """Pure dict of `ShapeDtypeStruct`s for an abstract param `nnx.State`; with `mesh`, each carries the
  training rules' sharding (Orbax then reads only the shards each host holds)."""
  import jax
  from flax import nnx
  from jax.sharding import NamedSharding, PartitionSpec

  from simko_jax.parallel import logical_axes_of, logical_to_sharding

  def one(v):
    value = v.get_value()
    sharding = None
    if mesh is not None:
      axes = logical_axes_of(v)
      sharding = (logical_to_sharding(axes, mesh, None, value.shape) if axes
                  else NamedSharding(mesh, PartitionSpec()))
    return v.replace(jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding))

  return nnx.to_pure_dict(jax.tree.map(one, abstract, is_leaf=lambda x: isinstance(x, nnx.Variable)))


def tokenizer_dir(source: PolicySource) -> epath.Path:
  """Where a trainer run keeps its tokenizer files (`<checkpoints>/tokenizer/`)."""
  return epath.Path(source.path) / TOKENIZER_DIR


def load_tokenizer_of(source: PolicySource):
  """The policy's tokenizer: from the checkpoint's tokenizer files, else (old checkpoints, HF, GGUF)
  from the recorded / given source."""
  from simko_jax.models.tokenizer import Tokenizer, check_vocab_size
  from simko_jax.models.tokenizer_files import has_tokenizer, load_tokenizer
  from simko_jax.train.model_source import vocab_size_field
  if source.kind != "run":
    tokenizer = Tokenizer.load(source.path)
    check_vocab_size(tokenizer, source.model_config.get("vocab_size"), vocab_size_field(source.path))
    return tokenizer
  if has_tokenizer(tokenizer_dir(source)):
    tokenizer = load_tokenizer(tokenizer_dir(source))
    check_vocab_size(tokenizer, source.model_config.get("vocab_size"),
                     f"the model_config vocab_size of checkpoint step {source.step} in {source.path}")
    return tokenizer
  recorded = source.meta.get("tokenizer")
  from simko_jax.train.model_source import resolve_tokenizer
  try:
    return resolve_tokenizer(recorded)
  except (FileNotFoundError, ValueError, TypeError) as err:
    raise CheckpointError(
        f"{source.path!r} has no tokenizer/ files (written before checkpoints carried them) and its "
        f"recorded tokenizer source {recorded!r} cannot be loaded ({err}): copy the model's "
        f"tokenizer.json, tokenizer_config.json (and chat template) into {str(tokenizer_dir(source))!r} "
        "with simko_jax.models.tokenizer_files.save_tokenizer") from err


def write_run_tokenizer(ckpt_dir, tokenizer, *, model_max_length: int | None = None) -> bool:
  """Write the run's tokenizer files into `<ckpt_dir>/tokenizer/` once (process 0 only); returns whether
  it wrote. A tokenizer `save_tokenizer` cannot write is skipped (the recorded source is used on load)."""
  import jax

  from simko_jax.models.tokenizer_files import has_tokenizer, save_tokenizer
  target = epath.Path(ckpt_dir) / TOKENIZER_DIR
  if jax.process_index() != 0 or has_tokenizer(target):
    return False
  try:
    save_tokenizer(tokenizer, target, model_max_length=model_max_length)
  except ValueError:
    return False
  return True
