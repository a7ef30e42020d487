"""SimKO on Gemma 3 1B IT, MATH train (7,500 problems): the paper's recipe on Google's Gemma (issue 27).

  HF_TOKEN=hf_... python -m simko_jax.main --config configs/paper_gemma3_1b_simko.py
The weights come from the Hub id google/gemma-3-1b-it, a gated repo: accept the Gemma licence on
https://huggingface.co/google/gemma-3-1b-it, then set HF_TOKEN (or run `hf auth login`); ~2 GB of
safetensors plus tokenizer.model (SentencePiece). A local copy works too:
--config.model.checkpoint=/data/gemma-3-1b-it. Not from the paper (it trains Qwen2.5-Math-7B and
Llama-3.2-3B-Instruct): the same published hyper-parameters as configs/paper_qwen25_math7b_simko.py
(1024 prompts x 8 rollouts, mini-batch 256, lr 1e-6, 20 epochs = 140 steps, SimKO K 3, alpha 0.01, lambda
1.1, tau 0.8) on the same MATH data, with the authors' system message and instruction in Gemma's own
chat template (Gemma has no system role: its template puts the system text at the top of the first user
turn; turns end with <end_of_turn>, a stop token of the sampler).
Attention runs as "xla" (einsum, float32 softmax), also on the GPU targets: cuDNN's kernel with
Gemma's head_dim 256 and the sliding-window mask is untested here.

Dry runs (`python -m simko_jax.main --config <file> --dry_run`, XLA:CPU with fake devices; the model
shape comes from `models.presets.GEMMA3_1B`, nothing is downloaded), 1.000B params (0.30B of them the
262,144 x 1152 tied embedding), per device, analytic:
  configs/gemma3_1b_h100x8.py      fsdp 8, 128 micro-batches x 16 rows x 4096 tokens: params 0.50 GB,
                                   Adam 1.00 GB, activations 9.09 GB, logits chunk 6.44 GB, KV cache
                                   6.98 GB; training peak 17.5 GB of 80 (rollout 8.5); XLA:CPU's plan
                                   27.3 GB temporaries; 6.29e15 FLOPs per update per device
  configs/gemma3_1b_tpu_v5e_64.py  fsdp 64, 32 micro-batches x 64 rows: training peak 7.5 GB of 16
                                   (logits chunk 6.44 GB, activations 0.78 GB), rollout 7.2 GB;
                                   XLA:CPU's plan 9.0 GB temporaries
(other targets: `--config configs/targets.py:gemma3_1b,<target>`). The sampler's KV cache keeps every
slot on sliding layers too (`models.kv_cache`), so it is sized as if all 26 layers were global.
"""

from configs.paper_qwen25_math7b_simko import get_config as _qwen


def get_config():
  c = _qwen()
  c.out_dir = "runs/gemma3_1b_simko"
  c.model.checkpoint = "google/gemma-3-1b-it"   # gated Hub id: needs HF_TOKEN
  c.model.attention_impl = "xla"
  c.train.mesh_fsdp = 8
  c.train.mesh_data = 1
  return c
