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


SP_MODEL_FILE = "tokenizer.model"  # a HF dir's SentencePiece model (Gemma, Llama 2)


def token_str(tok: Any) -> str | None:
  """The text of a token entry of tokenizer_config.json (a string or an AddedToken dict)."""
  if tok is None:
    return None
  return tok.get("content") if isinstance(tok, dict) else str(tok)


def _read_json(path: str) -> dict[str, Any]:
  """The JSON object in `path` ({} when the file does not exist); ModelLoadError when it is damaged."""
  if not os.path.isfile(path):
    return {}
  try:
    with open(path) as f:
      value = json.load(f)
  except (ValueError, UnicodeDecodeError) as err:
    raise ModelLoadError(f"{path} is not valid JSON ({one_line(err, 120)}): the file is damaged; "
                         "re-download it") from err
  if not isinstance(value, dict):
    raise ModelLoadError(f"{path} is not a JSON object: the file is damaged; re-download it")
  return value


def read_tokenizer_config(path: str) -> tuple[dict[str, Any], str | None]:
  """(tokenizer_config.json as a dict, chat template or None) of the HF dir `path`; the template is the
  config's `chat_template` (its "default" entry when a list), else `chat_template.jinja`."""
  conf = _read_json(os.path.join(path, "tokenizer_config.json"))
  template = conf.get("chat_template")
  jinja_file = os.path.join(path, "chat_template.jinja")
  if template is None and os.path.isfile(jinja_file):
    with open(jinja_file) as f:
      template = f.read()
  if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
    template = {t["name"]: t["template"] for t in template}.get("default")
  return conf, template


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


# Tokens that end a chat turn: sampling stops at them as at EOS (Gemma's eos_token is <eos>, but its chat
# turns end with <end_of_turn>; transformers lists both in Gemma's generation_config eos_token_id).
TURN_END_TOKENS = ("<end_of_turn>",)


class Tokenizer:
  """Thin wrapper over a `tokenizers.Tokenizer` or a `SentencePieceBackend`.

  Attributes: `eos_id`, `pad_id` (falls back to eos), `bos_id` (may be None), `vocab_size` (ids it can
  produce, added tokens included), `chat_template` (str or None), `stop_ids` (eos plus turn-end tokens).
  `add_bos_token` / `add_eos_token`: what `encode(..., add_special_tokens=True)` adds for a SentencePiece
  tokenizer (a tokenizer.json carries its own post-processor).
  """

  def __init__(self, backend: Any, *, eos_id: int | None, pad_id: int | None = None,
               bos_id: int | None = None, chat_template: str | None = None, bos_token: str | None = None,
               eos_token: str | None = None, vocab_size: int | None = None, kind: str = "tokenizers",
               source: str | None = None):
    self._backend = backend
    self._kind = kind
    self.source = source  # the file it was read from (for messages)
    self.eos_id = eos_id
    self.pad_id = pad_id if pad_id is not None else eos_id
    self.bos_id = bos_id
    self.chat_template = chat_template
    self.bos_token = bos_token
    self.eos_token = eos_token
    self.vocab_size = vocab_size if vocab_size is not None else (
        backend.get_vocab_size(with_added_tokens=True) if kind == "tokenizers" else backend.vocab_size)
    self.add_bos_token, self.add_eos_token = True, False
    self.config: dict[str, Any] = {}  # tokenizer_config.json of a SentencePiece dir (written back on save)

  @property
  def model_vocab_size(self) -> int:
    """Ids the vocabulary proper spans (SentencePiece pieces / tokenizer.json model vocab): added tokens
    past its end are excluded (a multimodal checkpoint's tokenizer may add e.g. image tokens that its
    text model has no embedding rows for)."""
    if self._kind == "sentencepiece":
      return self._backend.num_pieces
    return self._backend.get_vocab_size(with_added_tokens=False)

  @property
  def stop_ids(self) -> tuple[int, ...]:
    """EOS and the chat turn-end tokens this vocabulary has (`TURN_END_TOKENS`), sorted."""
    ids = {self.eos_id} | {self.token_to_id(t) for t in TURN_END_TOKENS}
    return tuple(sorted(int(i) for i in ids if i is not None))

  # ------------------------------------------------------------------ core
  def token_to_id(self, text: str) -> int | None:
    return self._backend.token_to_id(text)

  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
    if self._kind == "sentencepiece":
      ids = self._backend.encode(text)
      if add_special_tokens and self.add_bos_token and self.bos_id is not None:
        ids = [self.bos_id] + ids
      if add_special_tokens and self.add_eos_token and self.eos_id is not None:
        ids = ids + [self.eos_id]
      return ids
    return list(self._backend.encode(text, add_special_tokens=add_special_tokens).ids)

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    ids = [int(i) for i in ids]
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
      return cls.from_sentencepiece(path)  # a bare model file: no config, the model's own bos/eos/pad
    raise ValueError(f"cannot tell what tokenizer {path!r} is (want a dir, .gguf or .model)")

  @classmethod
  def from_hf_dir(cls, path: str) -> "Tokenizer":
    """A HF tokenizer dir, local files only: `tokenizer.json`, else SentencePiece `tokenizer.model`; plus
    `tokenizer_config.json` / `special_tokens_map.json` (+ `chat_template.jinja` if present).

    With both files, `tokenizer.json` wins, as in transformers (for Gemma it is HF's conversion of the
    .model, so both encode alike; the tokenizers backend is faster and can be saved in checkpoints).
    """
    tok_file = os.path.join(path, "tokenizer.json")
    conf, template = read_tokenizer_config(path)
    if not os.path.isfile(tok_file) and os.path.isfile(os.path.join(path, SP_MODEL_FILE)):
      return cls.from_sentencepiece(os.path.join(path, SP_MODEL_FILE), conf=conf, chat_template=template,
                                    extra_configs=[_read_json(os.path.join(path, "special_tokens_map.json"))])
    from tokenizers import Tokenizer as HFTokenizer
    if not os.path.isfile(tok_file):
      raise MissingModelFileError(f"no tokenizer.json in {path!r}: the checkpoint's tokenizer is missing; "
                                  f"copy the model's tokenizer.json (or SentencePiece {SP_MODEL_FILE}) and "
                                  "tokenizer_config.json there")
    try:
      backend = HFTokenizer.from_file(tok_file)
    except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception
      raise ModelLoadError(f"{tok_file} is not a readable tokenizer ({one_line(err, 120)}): the file is "
                           "damaged; re-download it") from err
    bos, eos, pad = (token_str(conf.get(k)) for k in ("bos_token", "eos_token", "pad_token"))
    ids = {name: (backend.token_to_id(name) if name else None) for name in (bos, eos, pad)}
    eos_id = ids.get(eos)
    if eos_id is None and os.path.isfile(os.path.join(path, "config.json")):
      with open(os.path.join(path, "config.json")) as f:
        eos_cfg = json.load(f).get("eos_token_id")
      eos_id = eos_cfg[0] if isinstance(eos_cfg, list) else eos_cfg
    return cls(backend, eos_id=eos_id, pad_id=ids.get(pad), bos_id=ids.get(bos), chat_template=template,
               bos_token=bos, eos_token=eos, source=tok_file)

  @classmethod
  def from_sentencepiece(cls, path: str, chat_template: str | None = None, conf: dict | None = None,
                         extra_configs: Sequence[dict] = ()) -> "Tokenizer":
    """A SentencePiece `.model` file; `conf` (tokenizer_config.json) and `extra_configs`
    (special_tokens_map.json) name its special / added tokens and `add_bos_token` / `add_eos_token`
    (default True / False, as transformers' Gemma and Llama tokenizers). Without them, bos / eos / pad
    are the model's own pieces."""
    try:
      import sentencepiece  # noqa: F401
    except ImportError as e:
      raise ImportError("loading a SentencePiece .model needs the `sentencepiece` package "
                        "(pip install sentencepiece), or use the model's tokenizer.json instead") from e
    from simko_jax.models.sentencepiece_tokenizer import sentencepiece_backend
    conf = dict(conf or {})
    backend = sentencepiece_backend(path, [conf, *extra_configs])
    sp = backend.sp

    def named(key: str, own: int) -> int | None:
      for c in (conf, *extra_configs):
        if c.get(key) is not None:
          return backend.token_to_id(token_str(c[key]))
      return own if own >= 0 else None

    bos, eos = named("bos_token", sp.bos_id()), named("eos_token", sp.eos_id())
    pad = named("pad_token", sp.pad_id())
    tok = cls(backend, eos_id=eos, pad_id=pad, bos_id=bos, chat_template=chat_template, kind="sentencepiece",
              bos_token=backend.id_to_token(bos) if bos is not None else None,
              eos_token=backend.id_to_token(eos) if eos is not None else None, vocab_size=backend.vocab_size,
              source=path)
    tok.add_bos_token = bool(conf.get("add_bos_token", True))
    tok.add_eos_token = bool(conf.get("add_eos_token", False))
    tok.config = conf
    return tok

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
               eos_token=tokens[eos_id] if eos_id is not None else None, vocab_size=len(tokens), source=path)


def check_vocab_size(tokenizer: Any, vocab_size: int | None, field: str) -> None:
  """ModelLoadError (one line) when `tokenizer` has ids the model has no embedding row for: its
  vocabulary (`model_vocab_size`) or its bos / eos / pad / stop ids reach `vocab_size` (the checkpoint's,
  named by `field`, e.g. "<dir>/config.json vocab_size"). A model vocab larger than the tokenizer's is
  normal (Qwen pads it to a multiple of 128)."""
  if vocab_size is None:
    return
  size = getattr(tokenizer, "model_vocab_size", tokenizer.vocab_size)
  specials = [tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, *getattr(tokenizer, "stop_ids", ())]
  needed = max([size] + [int(i) + 1 for i in specials if i is not None])
  if needed > vocab_size:
    what = getattr(tokenizer, "source", None) or type(tokenizer).__name__
    raise ModelLoadError(f"the tokenizer {what} has {needed} token ids but {field} = {vocab_size}: ids >= "
                         f"{vocab_size} have no embedding row, so this tokenizer is not the checkpoint's; use "
                         "the tokenizer files that came with the checkpoint (or fix its vocab_size)")


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
