"""SimKO on Llama-3.2-3B-Instruct, GSM8K + MATH level-1 mix (8,388 problems), the paper's second setting.

  python -m simko_jax.main --config configs/paper_llama32_3b_simko.py \\
      --config.model.checkpoint=/data/Llama-3.2-3B-Instruct
Same published hyper-parameters as the Qwen2.5-Math-7B run (SIMKO_METHOD.md §8) on this data mix.
"""

from configs.paper_qwen25_math7b_simko import get_config as _qwen

GSM8K_LEVEL1_TRAIN = "../shared/data/train/gsm8k_level1_train.parquet"


def get_config():
  c = _qwen()
  c.out_dir = "runs/llama32_3b_simko"
  c.model.checkpoint = "/data/Llama-3.2-3B-Instruct"
  c.data.train_files = GSM8K_LEVEL1_TRAIN
  c.train.mesh_fsdp = 8
  return c
