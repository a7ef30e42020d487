"""RLVR data: problem-file readers, procedural tasks (arith, countdown) and the grain prompt pipeline.

Floor 3: imports numpy, pyarrow, grain and `simko_jax.rewards` (for answer extraction); no model code.
"""

from simko_jax.data.arith_task import ArithConfig, arith_example, arith_examples, arith_problem
from simko_jax.data.countdown import (CountdownConfig, countdown_example, countdown_examples,
                                      countdown_problem)
from simko_jax.data.pipeline import (PipelineConfig, PromptBatchIterator, PromptPipeline, collate,
                                     tokenize_prompt)
from simko_jax.data.prompts import (PAPER_PROMPT_SUFFIX, PAPER_SYSTEM_PROMPT, PROMPT_TEMPLATES, PromptFormat,
                                    format_from_eval_config, format_from_train_config, prompt_ids)
from simko_jax.data.sources import (FORMATS, DataError, EvalSplitError, Example, ReadStats, check_split,
                                    detect_format, read_examples, read_many)
