"""A tiny Gemma-style SentencePiece tokenizer dir, trained in the test with the package's own trainer.

Layout and settings follow Gemma's tokenizer: a BPE model with byte fallback, no dummy prefix, digits
split, whitespace-only pieces allowed, identity normalization; ids 0..4 = <pad> <eos> <bos> <unk> <mask>;
<start_of_turn> / <end_of_turn> user-defined pieces, listed as special in tokenizer_config.json's
added_tokens_decoder; the chat template from the config.
"""

from __future__ import annotations

import io
import json
import pathlib

# Gemma 2's chat template (google/gemma-2-*-it tokenizer_config.json).
GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")

# Gemma 3's chat template (google/gemma-3-*-it): a system message is prefixed to the first user turn.
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")  # ids 0..4, as in Gemma
TURN_MARKERS = ("<start_of_turn>", "<end_of_turn>")         # ids 5, 6
VOCAB_SIZE = 640  # 256 byte pieces + 7 specials + characters + merges

_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Solve $x^2 + 2x - 3 = 0$. The roots are $x = 1$ and $x = -3$, so the answer is $\\boxed{-3}$.",
    "Let $f(x) = \\frac{1}{2}x^2 + \\sqrt{x}$. Then $f(4) = 10$ and \\[\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}.\\]",
    "Une réponse naïve au café: déjà vu, très élégant, façade, Ångström, smörgåsbord.",
    "数学问题的答案是三。 我们计算面积和体积。",
    "def area(r):\n    return 3.14159 * r ** 2\n\n\tindented with a tab",
    "<start_of_turn>user\nWhat is 12 * 12?<end_of_turn>\n<start_of_turn>model\n144<end_of_turn>",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.5 -7 1/2 99%.",
]


def corpus(n: int = 400) -> list[str]:
  return [f"{_LINES[i % len(_LINES)]} {i}" for i in range(n)]


def train_sentencepiece(vocab_size: int = VOCAB_SIZE) -> bytes:
  """A serialized Gemma-style SentencePiece BPE model trained on `corpus()` (about a second)."""
  import sentencepiece as spm
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(corpus()), model_writer=model, model_type="bpe", vocab_size=vocab_size,
      byte_fallback=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
      normalization_rule_name="identity", split_digits=True, allow_whitespace_only_pieces=True,
      split_by_whitespace=True, character_coverage=1.0, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
      pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
      control_symbols=["<mask>"], user_defined_symbols=list(TURN_MARKERS), minloglevel=2,
      num_threads=1)
  return model.getvalue()


def tokenizer_config(template: str = GEMMA3_TEMPLATE) -> dict:
  """Gemma's tokenizer_config.json layout (added_tokens_decoder marks the turn markers special)."""
  added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                    "single_word": False, "special": True} for i, t in enumerate(SPECIALS + TURN_MARKERS)}
  return {"tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": False,
          "added_tokens_decoder": added, "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
          "unk_token": "<unk>", "additional_special_tokens": list(TURN_MARKERS),
          "clean_up_tokenization_spaces": False, "spaces_between_special_tokens": False,
          "model_max_length": 8192, "chat_template": template}


def write_gemma_tokenizer(directory, model_proto: bytes | None = None,
                          template: str = GEMMA3_TEMPLATE) -> pathlib.Path:
  """Write tokenizer.model + tokenizer_config.json + special_tokens_map.json into `directory`."""
  out = pathlib.Path(directory)
  out.mkdir(parents=True, exist_ok=True)
  (out / "tokenizer.model").write_bytes(model_proto if model_proto is not None else train_sentencepiece())
  (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(template), indent=2))
  (out / "special_tokens_map.json").write_text(json.dumps(
      {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
       "additional_special_tokens": list(TURN_MARKERS)}, indent=2))
  return out
