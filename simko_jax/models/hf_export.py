"""A policy as a complete Hugging Face model directory: sharded safetensors (+ index), config.json,
generation_config.json and the tokenizer files, loadable by `transformers` and vLLM.

  write_hf_export(model, tokenizer, "out/", dtype=jnp.bfloat16, max_shard_bytes=5 * 2**30,
                  generation={"temperature": 0.6, "top_p": 0.95})

Tensors come from `hf_io.hf_tensors` (the same layout conversions as `save_hf`). Shards are filled in
checkpoint order up to `max_shard_bytes` each (a single tensor larger than that gets its own shard);
one shard is `model.safetensors`, several are `model-0000i-of-0000n.safetensors` plus
`model.safetensors.index.json`, as `transformers.save_pretrained` writes them. `directory` may be a
gs:// path (`etils.epath`); each shard is then written to a local temp file and streamed up.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from typing import Any, Iterable, Mapping

import numpy as np
from etils import epath

from simko_jax.models.hf_io import hf_config, hf_tensors

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str | int) -> int:
  """Bytes from "5GB" / "500MiB" / "1024" (decimal units like transformers' max_shard_size)."""
  if isinstance(text, int):
    return text
  match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
  if not match or match.group(2).upper() not in _UNITS:
    raise ValueError(f"size {text!r} is not a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB)")
  size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
  if size < 1:
    raise ValueError(f"size {text!r} must be at least one byte")
  return size


def _save(tensors: dict[str, np.ndarray], dest: epath.Path) -> None:
  from safetensors.numpy import save_file
  if "://" not in str(dest):
    save_file(tensors, str(dest), metadata={"format": "pt"})
    return
  with tempfile.TemporaryDirectory() as tmp:
    local = f"{tmp}/shard.safetensors"
    save_file(tensors, local, metadata={"format": "pt"})
    with open(local, "rb") as src, dest.open("wb") as dst:
      shutil.copyfileobj(src, dst, 1 << 24)


def write_shards(tensors: Iterable[tuple[str, np.ndarray]], directory, max_shard_bytes: int) -> dict:
  """Write (name, array) pairs as safetensors shards of at most `max_shard_bytes`; returns
  {"files": [file names], "weight_map": {tensor: file}, "total_size": bytes}."""
  out = epath.Path(directory)
  shards: list[list[str]] = []
  current: dict[str, np.ndarray] = {}
  size, total, temp_names = 0, 0, []

  def flush():
    temp_names.append(f"shard-{len(temp_names):05d}.safetensors.part")
    _save(current, out / temp_names[-1])
    shards.append(list(current))
    current.clear()

  for name, arr in tensors:
    if current and size + arr.nbytes > max_shard_bytes:
      flush()
      size = 0
    current[name] = arr
    size += arr.nbytes
    total += arr.nbytes
  if current or not shards:
    flush()
  n = len(shards)
  files = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors"
                                                  for i in range(n)]
  for temp, final in zip(temp_names, files):
    (out / temp).rename(out / final)
  weight_map = {t: f for f, names in zip(files, shards) for t in names}
  if n > 1:
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
  return {"files": files, "weight_map": weight_map, "total_size": total}


def generation_config(model_cfg, tokenizer, sampling: Mapping[str, Any] | None = None) -> dict:
  """generation_config.json: the model's special ids (EOS = the model's and the tokenizer's, so
  transformers and vLLM stop where our sampler stops) and optional default sampling settings."""
  eos = model_cfg.eos_token_id
  eos_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
  tok_eos = getattr(tokenizer, "eos_id", None)
  if tok_eos is not None and int(tok_eos) not in eos_ids:
    eos_ids.append(int(tok_eos))
  pad = model_cfg.pad_token_id if model_cfg.pad_token_id is not None else getattr(tokenizer, "pad_id", None)
  out = {"bos_token_id": model_cfg.bos_token_id,
         "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else eos_ids, "pad_token_id": pad}
  if sampling:
    out.update({"do_sample": True, **dict(sampling)})
  return {k: v for k, v in out.items() if v is not None and v != []}


def write_hf_export(model, tokenizer, directory, *, dtype: Any = None, max_shard_bytes: int = 5 * 10**9,
                    sampling: Mapping[str, Any] | None = None) -> dict:
  """Write the whole HF model directory into `directory` (which must exist); returns the shard info.
  config.json is written last, after the weights and tokenizer, so a partial directory never looks
  like a model to `from_pretrained`."""
  from simko_jax.models.tokenizer_files import save_tokenizer
  out = epath.Path(directory)
  info = write_shards(hf_tensors(model, dtype), out, max_shard_bytes)
  save_tokenizer(tokenizer, out, model_max_length=model.cfg.max_position_embeddings)
  (out / "generation_config.json").write_text(json.dumps(
      generation_config(model.cfg, tokenizer, sampling), indent=2))
  (out / "config.json").write_text(json.dumps(hf_config(model.cfg, dtype), indent=2))
  return info
