"""A tokenizer as files in a directory: what checkpoints and HF exports carry, so that loading them never
depends on the model directory the run started from.

Layout written by `save_tokenizer(tokenizer, directory)` (the HF "fast tokenizer" files):
  tokenizer.json            the `tokenizers` backend (for a GGUF source: its vocab/merges/added tokens
                            converted to HF format by `Tokenizer.from_gguf`)
  tokenizer.model           instead of tokenizer.json for a SentencePiece tokenizer (Gemma): the model
  tokenizer_config.json     tokenizer_class, bos/eos/pad token strings, model_max_length (for
                            SentencePiece: the source's config, its added tokens and add_bos_token)
  special_tokens_map.json   bos/eos/pad token strings
  chat_template.jinja       the chat template (when the tokenizer has one)
  simko_tokenizer_meta.json {"kind": "tokenizers" | "char", "eos_id", "pad_id", "bos_id"}: what
                            `load_tokenizer` rebuilds; for the character tokenizer it is the only file
                            (kind "sentencepiece" for a tokenizer.model)
`load_tokenizer(directory)` reads it back (`Tokenizer.from_hf_dir`, or `CharTokenizer`). Paths go
through `etils.epath`, so `gs://` directories work; a remote directory is copied to a local temp dir
first (the `tokenizers` library reads local files only).
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from etils import epath

MARKER = "simko_tokenizer_meta.json"
# The marker's name until 2026-12-08, still read. Renamed because transformers picks its tokenizer backend
# by a substring test on file names: next to "simko_tokenizer.json" it assumed a tokenizer.json and
# built an empty tokenizer from a SentencePiece (Gemma) directory.
OLD_MARKER = "simko_tokenizer.json"
HF_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
            "chat_template.jinja")


def has_tokenizer(directory) -> bool:
  """Whether `directory` holds a complete `save_tokenizer` output (its marker is written last)."""
  return _marker(epath.Path(directory)) is not None


def _marker(directory: epath.Path) -> epath.Path | None:
  """The directory's marker file (current name first, then the old one), or None."""
  for name in (MARKER, OLD_MARKER):
    if (directory / name).exists():
      return directory / name
  return None


def _token(tokenizer: Any, token_id: int | None, fallback: str | None) -> str | None:
  if fallback:
    return fallback
  if token_id is None:
    return None
  return tokenizer._backend.id_to_token(int(token_id))


def save_tokenizer(tokenizer: Any, directory, *, model_max_length: int | None = None) -> epath.Path:
  """Write `tokenizer` (a `Tokenizer` over `tokenizers` or SentencePiece, or a `CharTokenizer`) into
  `directory`.

  The marker file is written last, so a crash mid-write leaves a directory `has_tokenizer` rejects.
  """
  from simko_jax.models.char_tokenizer import CharTokenizer
  out = epath.Path(directory)
  out.mkdir(parents=True, exist_ok=True)
  ids = {"eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id, "bos_id": tokenizer.bos_id}
  if isinstance(tokenizer, CharTokenizer):
    (out / MARKER).write_text(json.dumps({"kind": "char", **ids}, indent=2))
    return out
  kind = getattr(tokenizer, "_kind", None)
  if kind not in ("tokenizers", "sentencepiece"):
    raise ValueError(f"cannot write a {type(tokenizer).__name__} to a checkpoint: only tokenizers-library "
                     "(tokenizer.json / GGUF), SentencePiece and character tokenizers")
  tokens = {"bos_token": _token(tokenizer, tokenizer.bos_id, tokenizer.bos_token),
            "eos_token": _token(tokenizer, tokenizer.eos_id, tokenizer.eos_token),
            "pad_token": _token(tokenizer, tokenizer.pad_id, None)}
  tokens = {k: v for k, v in tokens.items() if v is not None}
  if kind == "sentencepiece":
    (out / "tokenizer.model").write_bytes(tokenizer._backend.serialized_model())
    config = {k: v for k, v in tokenizer.config.items() if k != "chat_template"}
    config.update(tokens, add_bos_token=tokenizer.add_bos_token, add_eos_token=tokenizer.add_eos_token)
  else:
    (out / "tokenizer.json").write_text(tokenizer._backend.to_str())
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              "add_bos_token": False, "add_eos_token": False, **tokens}
  if model_max_length:
    config["model_max_length"] = int(model_max_length)
  (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
  (out / "special_tokens_map.json").write_text(json.dumps(tokens, indent=2))
  if tokenizer.chat_template:
    (out / "chat_template.jinja").write_text(tokenizer.chat_template)
  (out / MARKER).write_text(json.dumps({"kind": kind, **ids}, indent=2))
  return out


def load_tokenizer(directory):
  """The tokenizer `save_tokenizer` wrote into `directory` (FileNotFoundError when there is none)."""
  from simko_jax.models.char_tokenizer import CharTokenizer
  from simko_jax.models.tokenizer import Tokenizer
  src = epath.Path(directory)
  marker = _marker(src)
  if marker is None:
    raise FileNotFoundError(f"no tokenizer files ({MARKER}) in {str(src)!r}")
  info = json.loads(marker.read_text())
  if info.get("kind") == "char":
    return CharTokenizer()
  if _is_local(src):
    tokenizer = Tokenizer.from_hf_dir(str(src))
  else:
    with tempfile.TemporaryDirectory() as tmp:
      copy_tokenizer(src, tmp)
      tokenizer = Tokenizer.from_hf_dir(tmp)
  # The ids the run used (e.g. a GGUF pad id absent from the token strings) win over re-derived ones.
  tokenizer.eos_id = info.get("eos_id", tokenizer.eos_id)
  tokenizer.pad_id = info.get("pad_id", tokenizer.pad_id)
  tokenizer.bos_id = info.get("bos_id", tokenizer.bos_id)
  return tokenizer


def copy_tokenizer(src, dst) -> None:
  """Copy the tokenizer files of `src` into `dst` (either may be a gs:// path); marker last."""
  src, dst = epath.Path(src), epath.Path(dst)
  dst.mkdir(parents=True, exist_ok=True)
  for name in HF_FILES:
    if (src / name).exists():
      (dst / name).write_bytes((src / name).read_bytes())
  marker = _marker(src)
  if marker is not None:  # an old-named marker is copied under the current name
    (dst / MARKER).write_bytes(marker.read_bytes())


def _is_local(path: epath.Path) -> bool:
  return "://" not in str(path)
