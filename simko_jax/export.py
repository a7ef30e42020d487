"""Export a policy to a Hugging Face model directory (transformers / vLLM):

  python -m simko_jax.export --checkpoint runs/simko [--step 140] --out exports/simko-140 \
      [--dtype bfloat16] [--max_shard_size 5GB] [--overwrite]

--checkpoint: a trainer run dir, its checkpoints/ dir (newest complete step, or --step), a HF dir, a
.gguf file or "smollm2". --dtype: of the saved tensors (default: the params' stored dtype).
Writes safetensors shards (+ model.safetensors.index.json when sharded), config.json,
generation_config.json (EOS ids; the run's eval temperature/top_p as sampling defaults) and the tokenizer
files (`simko_jax.models.tokenizer_files`). Both paths may be gs:// URLs.

Safety: an existing non-empty --out is never touched without --overwrite. Everything is written into a
staging directory next to --out (`.<name>.partial-<pid>`) and renamed to --out only when complete, so
a crash leaves no directory that looks like a finished export (the staging dir is removed on errors).
Runs on the host CPU (JAX_PLATFORMS=cpu unless set): export needs no accelerator. Bad input ends with
one `error: ...` line and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from etils import epath  # noqa: E402

DTYPES = ("float32", "bfloat16", "float16")


class ExportError(RuntimeError):
  """Bad export arguments or an unwritable destination; the message names the fix."""


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, not a usage dump: "error: unrecognized arguments: --x"
    sys.exit(f"error: {message} (see python -m simko_jax.export --help)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = _Parser(prog="python -m simko_jax.export", description=__doc__.split("\n")[0])
  p.add_argument("--checkpoint", required=True, help="run dir | checkpoints dir | HF dir | .gguf | smollm2")
  p.add_argument("--out", required=True, help="output directory (local or gs://)")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest complete)")
  p.add_argument("--dtype", choices=DTYPES, default=None, help="tensor dtype (default: stored dtype)")
  p.add_argument("--max_shard_size", default="5GB", help="largest safetensors shard, e.g. 5GB, 500MB")
  p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
  return p.parse_args(argv)


def _is_nonempty_dir(path: epath.Path) -> bool:
  return path.is_dir() and any(True for _ in path.iterdir())


def prepare_out(out: str, overwrite: bool) -> tuple[epath.Path, epath.Path]:
  """(final dir, empty staging dir beside it); ExportError when --out is unusable."""
  final = epath.Path(out)
  if final.exists() and not final.is_dir():
    raise ExportError(f"--out {out!r} is a file: give a directory path")
  if _is_nonempty_dir(final) and not overwrite:
    raise ExportError(f"--out {out!r} exists and is not empty: pass --overwrite to replace it, or "
                      "choose another --out")
  stage = final.parent / f".{final.name}.partial-{os.getpid()}"
  try:
    final.parent.mkdir(parents=True, exist_ok=True)
    if stage.exists():
      stage.rmtree()
    stage.mkdir()
    (stage / ".write_probe").write_text("ok")
    (stage / ".write_probe").unlink()
  except OSError as err:
    raise ExportError(f"cannot write --out {out!r} ({type(err).__name__}: {err}): choose a writable "
                      "directory") from err
  return final, stage


def commit(stage: epath.Path, final: epath.Path) -> None:
  """Move the finished staging dir to `final` (replacing an old export only now that the new one is
  complete)."""
  old = None
  if final.exists():
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    final.rename(old)
  stage.rename(final)
  if old is not None:
    old.rmtree()


def _sampling_defaults(source) -> dict:
  """The run's evaluation sampling settings as generation defaults ({} for HF / GGUF sources)."""
  ev = source.train_config.get("eval") or {}
  return {k: ev[k] for k in ("temperature", "top_p") if k in ev}


def export(checkpoint: str, out: str, *, step: int | None = None, dtype: str | None = None,
           max_shard_size: str = "5GB", overwrite: bool = False, log=print) -> dict:
  """Library form of the CLI; returns {"out", "files", "total_size", "step"}."""
  import jax.numpy as jnp

  from simko_jax.models.hf_export import parse_size, write_hf_export
  from simko_jax.train import policy_source
  try:
    max_bytes = parse_size(max_shard_size)
  except ValueError as err:
    raise ExportError(f"--max_shard_size: {err}") from err
  final, stage = prepare_out(out, overwrite)
  try:
    source = policy_source.locate(checkpoint, step)
    stored = (source.train_config.get("model") or {}).get("param_dtype", "float32")
    model = policy_source.load_model(source, dtype=jnp.float32, param_dtype=jnp.dtype(stored))
    tokenizer = policy_source.load_tokenizer_of(source)
    info = write_hf_export(model, tokenizer, stage, dtype=jnp.dtype(dtype) if dtype else None,
                           max_shard_bytes=max_bytes, sampling=_sampling_defaults(source))
    commit(stage, final)
  except BaseException:
    if stage.exists():
      stage.rmtree()
    raise
  log(f"[export] {checkpoint} (step {source.step}) -> {out}: {len(info['files'])} shard(s), "
      f"{info['total_size'] / 2**20:.1f} MiB")
  return {"out": str(final), "files": info["files"], "total_size": info["total_size"], "step": source.step}


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  from simko_jax.train.checkpoint import CheckpointError
  try:
    export(args.checkpoint, args.out, step=args.step, dtype=args.dtype,
           max_shard_size=args.max_shard_size, overwrite=args.overwrite)
  except (ExportError, CheckpointError) as err:
    sys.exit(f"error: {err}")
  except OSError as err:
    sys.exit(f"error: writing the export to {args.out!r} failed ({type(err).__name__}: {err}); nothing "
             "was left in --out: free space or choose another --out")
  return 0


if __name__ == "__main__":
  main()
