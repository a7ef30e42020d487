"""NNX decoder-only transformer (Llama / Qwen2 / Qwen3 / Gemma 2 / Gemma 3 text), HF/GGUF checkpoint I/O, tokenizers."""

from simko_jax.models.config import ModelConfig, tiny_gemma2, tiny_gemma3, tiny_llama3, tiny_qwen2, tiny_qwen3
from simko_jax.models.hf_io import save_hf
from simko_jax.models.loading import assemble_params, load_pretrained, smollm2_gguf_path
from simko_jax.models.transformer import Transformer

__all__ = ["ModelConfig", "tiny_llama3", "tiny_qwen2", "tiny_qwen3", "tiny_gemma2", "tiny_gemma3", "save_hf", "assemble_params",
           "load_pretrained", "smollm2_gguf_path", "Transformer", "Tokenizer"]


def __getattr__(name):
  if name == "Tokenizer":
    from simko_jax.models.tokenizer import Tokenizer
    return Tokenizer
  raise AttributeError(name)
