"""Hardware targets for the paper runs: mesh, per-process batch sizes and `config.target` in one place.

`apply_target(c, name)` keeps the paper's *global* batch (1024 prompts x 8 rollouts per RL step, PPO
mini-batch 256 prompts) and divides it by the number of JAX processes, because every batch size in a
config is per process (each host samples, scores and feeds its own prompts; see
`simko_jax/train/distributed.py`). `micro_batch_size` (per process) is chosen so a micro-batch puts
`rows_per_device` responses of 4096 tokens on each device. Check any target with
  python -m simko_jax.main --config configs/<file>.py --dry_run
"""

PAPER_PROMPTS, PAPER_MINI = 1024, 256
SAMPLE_ROWS_PER_DEVICE = 64  # responses decoded at once per device: bounds the sampler's KV cache

# name: (target.name, chips, processes, (data, fsdp, tensor), rows per device, attention)
TARGETS = {
    "h100x8": ("h100", 8, 1, (1, 8, 1), 2, "cudnn"),          # one node, one process
    "h100x16_slurm": ("h100", 16, 2, (2, 8, 1), 1, "cudnn"),  # 2 nodes x 8 GPUs, a process per node
    "tpu_v4_32": ("tpu_v4", 16, 4, (1, 16, 1), 1, "xla"),     # v4-32: 16 chips, 4 hosts
    "tpu_v5e_64": ("tpu_v5e", 64, 16, (1, 64, 1), 1, "xla"),  # v5litepod-64: 64 chips, 16 hosts
    "tpu_v5p_128": ("tpu_v5p", 64, 16, (4, 16, 1), 1, "xla"),  # v5p-128: 64 chips, 16 hosts
}


def apply_target(c, target: str):
  name, chips, procs, (data, fsdp, tensor), rows_per_device, attention = TARGETS[target]
  c.target.name, c.target.num_devices, c.target.num_processes = name, chips, procs
  c.train.mesh_data, c.train.mesh_fsdp, c.train.mesh_tensor = data, fsdp, tensor
  c.rollout.prompts_per_step = PAPER_PROMPTS // procs
  c.algo.mini_batch_prompts = PAPER_MINI // procs
  c.algo.micro_batch_size = rows_per_device * data * fsdp // procs
  chunk = SAMPLE_ROWS_PER_DEVICE * data * fsdp // (c.rollout.group_size * procs)
  c.rollout.sample_chunk_prompts = min(c.rollout.prompts_per_step, max(1, chunk))
  c.model.attention_impl = attention
  if name == "tpu_v5e":  # 16 GB chips: keep only each layer's input (dots-saving needs ~12 GB per row)
    c.model.remat = "full"
  c.rewards.num_workers = 16
  c.out_dir = f"{c.out_dir}_{target}"
  return c


def get_config(arg: str | None = None):
  """Any paper model on any target from the command line: `--config configs/targets.py:<model>,<target>`
  with <model> in {qwen25_math7b, llama32_3b, gemma3_1b} and <target> a key of TARGETS (default: the first)."""
  import importlib
  model, target = (arg or "qwen25_math7b,h100x8").split(",")
  base = {"qwen25_math7b": "paper_qwen25_math7b_simko", "llama32_3b": "paper_llama32_3b_simko",
          "gemma3_1b": "paper_gemma3_1b_simko"}[model]
  c = apply_target(importlib.import_module(f"configs.{base}").get_config(), target)
  if model == "gemma3_1b":
    c.model.attention_impl = "xla"  # see configs/paper_gemma3_1b_simko.py
  return c
