"""pass@k evaluation with the SimKO paper's protocol (SIMKO_METHOD.md §8, docs/paper_fidelity.md).

n = 256 samples per problem (300 for AIME24 / AIME25 / AMC23), temperature 0.6, top-p 0.95, up to 4096
new tokens, unbiased pass@k for k = 1, 2, 4, ..., n; prompts exactly as the paper configs train them
(system message, instruction suffix, the model's chat template: `data.prompts`), answers extracted as the
authors' reward does (boxed -> "the answer is" -> last number).
  python -m simko_jax.evaluate --config configs/eval_default.py --checkpoint smollm2 \\
      --config.benchmarks=gsm8k,math500 --config.num_problems=10 --config.num_samples=8
Every field: `simko_jax.eval.config.default_eval_config`.
"""

from simko_jax.data.prompts import PAPER_PROMPT_SUFFIX, PAPER_SYSTEM_PROMPT
from simko_jax.eval.config import default_eval_config

PAPER_SAMPLES_BY_BENCHMARK = "aime24:300,aime25:300,amc23:300"


def get_config():
  c = default_eval_config()
  c.out_dir = "runs/eval_default"
  c.system_prompt = PAPER_SYSTEM_PROMPT
  c.prompt_suffix = PAPER_PROMPT_SUFFIX
  c.prompt_template = "chat"
  c.num_samples_by_benchmark = PAPER_SAMPLES_BY_BENCHMARK
  c.math_extraction = "boxed_answer_is_number"
  return c
