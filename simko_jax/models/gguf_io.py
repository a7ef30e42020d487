"""GGUF (llama.cpp) import for the `llama` architecture: config from metadata, dequantized tensors.

Tensors are read with `gguf.GGUFReader` (memory-mapped) and dequantized one at a time with
`gguf.quants.dequantize` (F32/F16/BF16/Q8_0/Q4_0/Q4_1/K-quants — whatever gguf-py supports) into HF
[out, in] layout. llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel.permute`) reorders the rows
of attn_q / attn_k from HF's rotate-half RoPE layout to GGML's interleaved one:

    w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)

(n_head = n_kv_heads for attn_k); `unpermute_rope_rows` undoes it.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from simko_jax.models.config import ModelConfig
from simko_jax.models.errors import MissingModelFileError, ModelLoadError, one_line
from simko_jax.models.hf_io import hf_shape

# our layer source tensor (`models.layout.source_shapes`) -> (GGUF tensor name pattern, HF-layout kind)
GGUF_LAYER_NAMES: dict[str, tuple[str, str]] = {
    "attn_norm": ("blk.{i}.attn_norm.weight", "vector"),
    "wq": ("blk.{i}.attn_q.weight", "linear"),
    "wk": ("blk.{i}.attn_k.weight", "linear"),
    "wv": ("blk.{i}.attn_v.weight", "linear"),
    "wo": ("blk.{i}.attn_output.weight", "linear"),
    "mlp_norm": ("blk.{i}.ffn_norm.weight", "vector"),
    "w_gate": ("blk.{i}.ffn_gate.weight", "linear"),
    "w_up": ("blk.{i}.ffn_up.weight", "linear"),
    "w_down": ("blk.{i}.ffn_down.weight", "linear"),
}
GGUF_GLOBAL_NAMES: dict[str, tuple[str, str]] = {
    "embed": ("token_embd.weight", "embed"),
    "final_norm": ("output_norm.weight", "vector"),
    "lm_head": ("output.weight", "linear"),
}


def unpermute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
  """Inverse of llama.cpp's `permute(w, n_head, n_head)` on the rows of a q/k weight [rows, cols]."""
  rows = w.shape[0]
  return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def permute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
  """llama.cpp's `LlamaModel.permute` (HF -> GGUF), for tests."""
  rows = w.shape[0]
  return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def open_gguf(path: str):
  """`gguf.GGUFReader(path)` (it memory-maps a local file: a gs:// URL is first copied to a local cache);
  `ModelLoadError` naming the file when it is missing, truncated or corrupt."""
  import gguf

  from simko_jax import storage
  path = storage.local_copy(path)
  if not os.path.isfile(path):
    raise MissingModelFileError(f"GGUF file {path!r} does not exist")
  try:
    return gguf.GGUFReader(path)
  except Exception as err:  # noqa: BLE001 - gguf-py raises ValueError, struct/IndexError, OSError...
    raise ModelLoadError(f"{path} is not a readable GGUF file ({type(err).__name__}: {one_line(err, 120)}): "
                         "it is truncated or corrupt; re-download or re-convert it") from err


def gguf_field(reader, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  if field is None:
    return default
  return field.contents()


def gguf_config(reader, **overrides) -> ModelConfig:
  """`ModelConfig` from GGUF metadata (llama architecture only)."""
  arch = gguf_field(reader, "general.architecture")
  if arch != "llama":
    raise ValueError(f"unsupported GGUF architecture {arch!r}; only 'llama' is supported")
  names = {t.name for t in reader.tensors}
  if "rope_freqs.weight" in names:
    raise NotImplementedError("GGUF with rope_freqs.weight (llama3 rope scaling) is not supported yet")

  def req(key):
    value = gguf_field(reader, f"llama.{key}")
    if value is None:
      raise ValueError(f"GGUF metadata key 'llama.{key}' is missing")
    return value

  hidden = int(req("embedding_length"))
  heads = int(req("attention.head_count"))
  vocab = gguf_field(reader, "llama.vocab_size")
  if vocab is None:
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
  kw = dict(
      vocab_size=int(vocab), hidden_size=hidden, num_layers=int(req("block_count")), num_heads=heads,
      num_kv_heads=int(gguf_field(reader, "llama.attention.head_count_kv", heads)),
      head_dim=int(gguf_field(reader, "llama.attention.key_length", hidden // heads)),
      intermediate_size=int(req("feed_forward_length")),
      rms_norm_eps=float(gguf_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
      rope_theta=float(gguf_field(reader, "llama.rope.freq_base", 10000.0)),
      tie_word_embeddings="output.weight" not in names,
      max_position_embeddings=int(gguf_field(reader, "llama.context_length", 2048)),
      bos_token_id=gguf_field(reader, "tokenizer.ggml.bos_token_id"),
      eos_token_id=gguf_field(reader, "tokenizer.ggml.eos_token_id"),
      pad_token_id=gguf_field(reader, "tokenizer.ggml.padding_token_id"),
      architecture="LlamaForCausalLM")
  kw.update(overrides)
  return ModelConfig(**kw)


def gguf_tensor_getter(reader, cfg: ModelConfig) -> Callable[[str, int | None, tuple[int, ...]], np.ndarray]:
  """`get(source, layer, our_shape) -> np.ndarray` (float32, our layout) dequantizing on demand; `source`
  a global param or a layer source tensor of `models.layout`."""
  from gguf.quants import dequantize
  tensors = {t.name: t for t in reader.tensors}

  def get(param: str, layer: int | None, shape: tuple[int, ...]) -> np.ndarray:
    pattern, kind = GGUF_GLOBAL_NAMES[param] if layer is None else GGUF_LAYER_NAMES[param]
    name = pattern.format(i=layer)
    if name not in tensors:
      raise ModelLoadError(f"tensor {name!r} is not in the GGUF file: it does not match its own "
                           "metadata; re-download or re-convert it")
    t = tensors[name]
    arr = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
    want = hf_shape(kind, shape)
    if arr.size != int(np.prod(want)):
      raise ModelLoadError(f"GGUF tensor {name!r} has {arr.size} values, expected shape {want}: it "
                           "does not match the file's metadata; re-download or re-convert it")
    arr = arr.reshape(want)
    if param == "wq":
      arr = unpermute_rope_rows(arr, cfg.num_heads)
    elif param == "wk":
      arr = unpermute_rope_rows(arr, cfg.num_kv_heads)
    from simko_jax.models.hf_io import from_hf
    return from_hf(kind, arr, shape)

  return get
