"""SimKO on Llama-3.2-3B-Instruct, GSM8K + MATH level-1 mix (8,388 problems), the paper's second setting.

  HF_TOKEN=hf_... python -m simko_jax.main --config configs/paper_llama32_3b_simko.py
The weights come from the Hub id meta-llama/Llama-3.2-3B-Instruct, a gated repo: accept the Llama 3.2
licence on https://huggingface.co/meta-llama/Llama-3.2-3B-Instruct, then set HF_TOKEN (or run
`hf auth login`). A local copy works too: --config.model.checkpoint=/data/Llama-3.2-3B-Instruct.
Same published hyper-parameters as the Qwen2.5-Math-7B run (SIMKO_METHOD.md §8) on this data mix, for
20 epochs x 8 batches = 160 steps (run_llama3.2-3b_SimKO.sh: total_epochs 20, 8,388 // 1024 = 8 batches).
Prompt: the authors' system message and instruction in Llama's own chat template. The authors' code fed
Llama the Qwen ChatML string instead (verl's prompt_template_type default "qwen" was not overridden);
`--config.data.prompt_template=qwen_chatml` reproduces that; see docs/paper_fidelity.md for why it is
not the default.
"""

from configs.paper_qwen25_math7b_simko import get_config as _qwen

GSM8K_LEVEL1_TRAIN = "../shared/data/train/gsm8k_level1_train.parquet"


def get_config():
  c = _qwen()
  c.out_dir = "runs/llama32_3b_simko"
  c.model.checkpoint = "meta-llama/Llama-3.2-3B-Instruct"   # gated Hub id: needs HF_TOKEN
  c.data.train_files = GSM8K_LEVEL1_TRAIN
  c.train.mesh_fsdp = 8
  c.train.steps = 160
  return c
