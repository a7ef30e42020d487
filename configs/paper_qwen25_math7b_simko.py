"""SimKO on Qwen2.5-Math-7B, MATH train (7,500 problems): the paper's main setting (SIMKO_METHOD.md §8).

Not runnable on a CPU; needs 8 x H100 (or a TPU slice, see launch/). The weights come from the Hugging
Face Hub (`Qwen/Qwen2.5-Math-7B`, ~15 GB of safetensors, downloaded once into the Hub cache on each
host; launch/README.md "Weights from the Hugging Face Hub"); a local copy works too:
  python -m simko_jax.main --config configs/paper_qwen25_math7b_simko.py \\
      [--config.model.checkpoint=/data/Qwen2.5-Math-7B]
Published: lr 1e-6 constant; 1024 prompts x 8 rollouts; PPO mini-batch 256 prompts (4 updates/batch);
1 epoch; prompt 1024 / response 3072 tokens; temperature 1.0, top-p 1; no KL; clip 0.2; 20 epochs over
MATH (7 batches x 20 = 140 steps). SimKO: K 3, alpha 0.01, lambda 1.1 on the advantage, tau 0.8 quantile.
From the authors' code (CLR-Lab/SimKO run_qwen2.5-math-7b_SimKO.sh + verl defaults): the system message
"You are a helpful assistant." and the step-by-step / \boxed{} instruction after every problem, the
boxed -> "the answer is" -> last number answer extraction, AdamW weight decay 0.01. Every setting, with
the paper's and the authors' values and every difference: docs/paper_fidelity.md (checked by
tests/configs/test_paper_fidelity.py).
"""

from simko_jax.config import default_config
from simko_jax.data.prompts import PAPER_PROMPT_SUFFIX, PAPER_SYSTEM_PROMPT

MATH_TRAIN = "../shared/data/train/math_train.parquet"


def get_config():
  c = default_config()
  c.out_dir = "runs/qwen25_math7b_simko"
  c.model.checkpoint = "Qwen/Qwen2.5-Math-7B"   # Hub id (append @<commit> to pin the revision)
  c.model.dtype = "bfloat16"
  c.model.param_dtype = "float32"
  c.model.remat = "dots_with_no_batch_dims_saveable"
  c.model.attention_impl = "cudnn"
  c.data.task = "files"
  c.data.train_files = MATH_TRAIN
  c.data.on_bad_row = "skip"       # two MATH rows have an empty answer
  c.data.max_prompt_len = 1024
  c.data.prompt_bucket = 128
  c.data.num_epochs = 20
  c.data.system_prompt = PAPER_SYSTEM_PROMPT
  c.data.prompt_suffix = PAPER_PROMPT_SUFFIX
  c.data.prompt_template = "chat"  # Qwen's own template renders exactly the authors' ChatML string
  c.rollout.prompts_per_step = 1024
  c.rollout.group_size = 8
  c.rollout.max_new_tokens = 3072
  c.rollout.temperature = 1.0
  c.rollout.top_p = 1.0
  c.rollout.sample_chunk_prompts = 64   # 512 responses per sampler call = 64 per H100 (bounds the KV cache)
  c.algo.method = "simko"
  c.algo.top_k, c.algo.alpha, c.algo.lam, c.algo.lam_on = 3, 0.01, 1.1, "advantage"
  c.algo.tau, c.algo.gate = 0.8, "quantile"
  c.algo.clip_low = c.algo.clip_high = 0.2
  c.algo.kl_coef = 0.0
  c.algo.entropy_coef = 0.0        # verl's 0.001 default is set but without gradient under SimKO (detached)
  c.algo.ppo_epochs = 1
  c.algo.mini_batch_prompts = 256
  c.algo.micro_batch_size = 16
  c.algo.loss_chunk_size = 2048
  c.optim.learning_rate = 1e-6
  c.optim.schedule = "constant"
  c.optim.weight_decay = 0.01      # verl's AdamW default (fsdp_workers.py), in effect in the authors' runs
  c.train.steps = 140
  c.train.mesh_fsdp = 8
  c.train.mesh_data = 1
  c.checkpoint.every = 10
  c.rewards.num_workers = 16
  c.rewards.math_extraction = "boxed_answer_is_number"  # the authors' extract_answer_math
  c.eval.enabled = False           # evaluate checkpoints with `python -m simko_jax.evaluate`
  c.eval.max_new_tokens = 4096     # the paper's eval budget; `simko_jax.evaluate` reads it from the run
  return c
