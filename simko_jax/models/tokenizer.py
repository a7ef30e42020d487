"""`Tokenizer`: encode/decode + jinja2 chat templates, from a HF dir, a SentencePiece model or a GGUF file.

Reads local files only (a Hub id is first downloaded by `simko_jax.models.hub`). `encode` does *not*
add BOS/EOS by default: chat templates already contain whatever special tokens the model expects.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any, Sequence

from simko_jax.models.errors import MissingModelFileError, ModelLoadError, one_line

# llama.cpp `tokenizer.ggml.pre` -> split regex (same as transformers' GGUF loader).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GGUF_PRE_SPLITS = {"llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT,
                   "smaug-bpe": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT}


def _token_str(tok: Any) -> str | None:
  if tok is None:
    return None
  return tok.get("content") if isinstance(tok, dict) else str(tok)


def render_chat_template(template: str, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
                         **kwargs) -> str:
  """Render an HF-style jinja2 chat template (sandboxed, trim_blocks/lstrip_blocks like transformers)."""
  from jinja2.sandbox import ImmutableSandboxedEnvironment

  def raise_exception(message):
    raise ValueError(f"chat template error: {message}")

  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=["jinja2.ext.loopcontrols"])
  env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(
      x, indent=indent, ensure_ascii=ensure_ascii)
  env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
  return env.from_string(template).render(messages=list(messages),
                                          add_generation_prompt=add_generation_prompt, **kwargs)


class Tokenizer:
  """Thin wrapper over a `tokenizers.Tokenizer` (or a SentencePiece processor).

  Attributes: `eos_id`, `pad_id` (falls back to eos), `bos_id` (may be None), `vocab_size`,
  `chat_template` (str or None).
  """

  def __init__(self, backend: Any, *, eos_id: int | None, pad_id: int | None = None,
               bos_id: int | None = None, chat_template: str | None = None, bos_token: str | None = None,
               eos_token: str | None = None, vocab_size: int | None = None, kind: str = "tokenizers"):
    self._backend = backend
    self._kind = kind
    self.eos_id = eos_id
    self.pad_id = pad_id if pad_id is not None else eos_id
    self.bos_id = bos_id
    self.chat_template = chat_template
    self.bos_token = bos_token
    self.eos_token = eos_token
    self.vocab_size = vocab_size if vocab_size is not None else (
        backend.get_vocab_size(with_added_tokens=True) if kind == "tokenizers" else backend.get_piece_size())

  # ------------------------------------------------------------------ core
  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
    if self._kind == "sentencepiece":
      ids = list(self._backend.encode(text))
      return ([self.bos_id] if add_special_tokens and self.bos_id is not None else []) + ids
    return list(self._backend.encode(text, add_special_tokens=add_special_tokens).ids)

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    ids = [int(i) for i in ids]
    if self._kind == "sentencepiece":
      return self._backend.decode(ids)
    return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

  def apply_chat_template(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
                          **kwargs) -> str:
    """The prompt string for `messages` ([{"role", "content"}, ...]) under the model's template."""
    if not self.chat_template:
      raise ValueError("this tokenizer has no chat template")
    kwargs.setdefault("bos_token", self.bos_token or "")
    kwargs.setdefault("eos_token", self.eos_token or "")
    return render_chat_template(self.chat_template, messages, add_generation_prompt, **kwargs)

  # ------------------------------------------------------------------ loaders
  @classmethod
  def load(cls, path: str) -> "Tokenizer":
    """From a HF tokenizer dir, a `.gguf` file, or a SentencePiece `.model` file (local or gs://)."""
    from simko_jax import storage
    path = storage.local_copy(path)
    if os.path.isdir(path):
      return cls.from_hf_dir(path)
    if path.endswith(".gguf"):
      return cls.from_gguf(path)
    if path.endswith(".model"):
      return cls.from_sentencepiece(path)
    raise ValueError(f"cannot tell what tokenizer {path!r} is (want a dir, .gguf or .model)")

  @classmethod
  def from_hf_dir(cls, path: str) -> "Tokenizer":
    """`tokenizer.json` + `tokenizer_config.json` (+ `chat_template.jinja` if present), local files only."""
    from tokenizers import Tokenizer as HFTokenizer
    tok_file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(tok_file):
      raise MissingModelFileError(f"no tokenizer.json in {path!r}: the checkpoint's tokenizer is missing; "
                                  "copy the model's tokenizer.json (and tokenizer_config.json) there")
    try:
      backend = HFTokenizer.from_file(tok_file)
    except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception
      raise ModelLoadError(f"{tok_file} is not a readable tokenizer ({one_line(err, 120)}): the file is "
                           "damaged; re-download it") from err
    conf: dict[str, Any] = {}
    conf_file = os.path.join(path, "tokenizer_config.json")
    if os.path.isfile(conf_file):
      try:
        with open(conf_file) as f:
          conf = json.load(f)
      except ValueError as err:
        raise ModelLoadError(f"{conf_file} is not valid JSON ({one_line(err, 120)}): the file is damaged; "
                             "re-download it") from err
    template = conf.get("chat_template")
    jinja_file = os.path.join(path, "chat_template.jinja")
    if template is None and os.path.isfile(jinja_file):
      with open(jinja_file) as f:
        template = f.read()
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
      template = {t["name"]: t["template"] for t in template}.get("default")
    bos, eos, pad = (_token_str(conf.get(k)) for k in ("bos_token", "eos_token", "pad_token"))
    ids = {name: (backend.token_to_id(name) if name else None) for name in (bos, eos, pad)}
    eos_id = ids.get(eos)
    if eos_id is None and os.path.isfile(os.path.join(path, "config.json")):
      with open(os.path.join(path, "config.json")) as f:
        eos_cfg = json.load(f).get("eos_token_id")
      eos_id = eos_cfg[0] if isinstance(eos_cfg, list) else eos_cfg
    return cls(backend, eos_id=eos_id, pad_id=ids.get(pad), bos_id=ids.get(bos), chat_template=template,
               bos_token=bos, eos_token=eos)

  @classmethod
  def from_sentencepiece(cls, path: str, chat_template: str | None = None) -> "Tokenizer":
    try:
      import sentencepiece
    except ImportError as e:
      raise ImportError("loading a SentencePiece .model needs the `sentencepiece` package "
                        "(pip install sentencepiece), or use the model's tokenizer.json instead") from e
    sp = sentencepiece.SentencePieceProcessor(model_file=path)
    bos = sp.bos_id() if sp.bos_id() >= 0 else None
    eos = sp.eos_id() if sp.eos_id() >= 0 else None
    pad = sp.pad_id() if sp.pad_id() >= 0 else None
    return cls(sp, eos_id=eos, pad_id=pad, bos_id=bos, chat_template=chat_template, kind="sentencepiece",
               bos_token=sp.id_to_piece(bos) if bos is not None else None,
               eos_token=sp.id_to_piece(eos) if eos is not None else None)

  @classmethod
  def from_gguf(cls, path: str) -> "Tokenizer":
    """Byte-level BPE ("gpt2" tokenizer model) from GGUF metadata: tokens, merges, token types, template.

    Control tokens (type 3) become special added tokens and user-defined ones (type 4) plain added tokens,
    so e.g. `<|im_start|>` encodes to one id, as in transformers' GGUF loader.
    """
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
    from tokenizers import Tokenizer as HFTokenizer

    from simko_jax.models.gguf_io import gguf_field, open_gguf
    reader = open_gguf(path)
    model_type = gguf_field(reader, "tokenizer.ggml.model")
    if model_type != "gpt2":
      raise ValueError(f"GGUF tokenizer model {model_type!r} is not supported (only byte-level BPE 'gpt2')")
    tokens = list(gguf_field(reader, "tokenizer.ggml.tokens"))
    types = list(gguf_field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in gguf_field(reader, "tokenizer.ggml.merges") or []]
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    byte_map = _bytes_to_unicode()

    def spell(tok: str) -> str:
      return tok if set(tok) <= alphabet else "".join(byte_map[b] for b in tok.encode("utf-8"))

    vocab = {spell(t): i for i, t in enumerate(tokens)}
    backend = HFTokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                     end_of_word_suffix="", fuse_unk=False))
    split = GGUF_PRE_SPLITS.get(gguf_field(reader, "tokenizer.ggml.pre"))
    if split is None:
      backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
      backend.pre_tokenizer = pre_tokenizers.Sequence([
          pre_tokenizers.Split(Regex(split), behavior="isolated"),
          pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    control = [AddedToken(t, normalized=False, special=True)
               for t, ty in zip(tokens, types) if ty == 3 and set(t) <= alphabet]
    if control:
      backend.add_special_tokens(control)
    user = [AddedToken(t, normalized=False, special=False) for t, ty in zip(tokens, types) if ty == 4]
    if user:
      backend.add_tokens(user)

    def tid(key):
      value = gguf_field(reader, key)
      return None if value is None else int(value)

    bos_id, eos_id = tid("tokenizer.ggml.bos_token_id"), tid("tokenizer.ggml.eos_token_id")
    return cls(backend, eos_id=eos_id, pad_id=tid("tokenizer.ggml.padding_token_id"), bos_id=bos_id,
               chat_template=gguf_field(reader, "tokenizer.chat_template"),
               bos_token=tokens[bos_id] if bos_id is not None else None,
               eos_token=tokens[eos_id] if eos_id is not None else None, vocab_size=len(tokens))


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible byte -> printable unicode char map."""
  bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
      list(range(ord("®"), ord("ÿ") + 1))
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, map(chr, cs)))
