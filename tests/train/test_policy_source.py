"""`policy_source`: locating run dirs / checkpoint dirs / steps, exact params, the tokenizer from the
checkpoint's own files, the back-compat path for checkpoints without them, and clear errors."""

import json
import shutil

import numpy as np
import pytest
from flax import nnx

from simko_jax.models.char_tokenizer import CharTokenizer
from simko_jax.train.checkpoint import CheckpointError
from simko_jax.train.policy_source import check_model, load_model, load_tokenizer_of, locate
from tests.eval.helpers import byte_tokenizer, tiny_model
from tests.eval.run_helpers import write_tiny_run


def _flat(model):
  return {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("run")
  write_tiny_run(out, tiny_model(seed=1), byte_tokenizer(), steps=(1,))
  write_tiny_run(out, tiny_model(seed=2), byte_tokenizer(), steps=(3,))
  return out


def test_locate_steps_and_exact_params(run_dir):
  newest = locate(str(run_dir))
  assert (newest.kind, newest.step) == ("run", 3) and newest.path.endswith("checkpoints")
  assert newest.train_config["eval"]["max_new_tokens"] == 6
  assert locate(str(run_dir / "checkpoints"), step=1).step == 1
  for step, seed in ((1, 1), (3, 2)):
    got, want = _flat(load_model(locate(str(run_dir), step))), _flat(tiny_model(seed=seed))
    assert got.keys() == want.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=str(key))
  with pytest.raises(CheckpointError, match=r"step 2 .* available steps \[1, 3\]"):
    locate(str(run_dir), step=2)


def test_tokenizer_from_checkpoint_files_then_back_compat(run_dir, tmp_path):
  tok = load_tokenizer_of(locate(str(run_dir)))
  assert tok.encode("x <|im_end|>") == byte_tokenizer().encode("x <|im_end|>") and tok.eos_id == 257
  old = tmp_path / "old"  # written before checkpoints carried tokenizer files
  write_tiny_run(old, tiny_model(), byte_tokenizer(), tokenizer_source="char", with_tokenizer=False)
  assert isinstance(load_tokenizer_of(locate(str(old))), CharTokenizer)
  gone = tmp_path / "gone"
  write_tiny_run(gone, tiny_model(), byte_tokenizer(), tokenizer_source=str(tmp_path / "deleted_model"),
                 with_tokenizer=False)
  with pytest.raises(CheckpointError, match="no tokenizer/ files .*deleted_model"):
    load_tokenizer_of(locate(str(gone)))
  # A HF source recorded in an old checkpoint still works while it exists.
  hf = tmp_path / "hf"
  shutil.copytree(run_dir / "checkpoints" / "tokenizer", hf)
  write_tiny_run(tmp_path / "old_hf", tiny_model(), byte_tokenizer(), tokenizer_source=str(hf),
                 with_tokenizer=False)
  assert load_tokenizer_of(locate(str(tmp_path / "old_hf"))).eos_id == 257


def test_errors_name_the_problem(run_dir, tmp_path):
  with pytest.raises(CheckpointError, match="does not exist"):
    locate(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(CheckpointError, match="no complete checkpoint"):
    locate(str(tmp_path / "empty"))
  source = locate(str(run_dir))
  other = dict(source.model_config, num_hidden_layers=5)
  with pytest.raises(CheckpointError, match="num_hidden_layers: checkpoint 2 vs this run 5"):
    check_model(source, other)
  check_model(source, json.loads(json.dumps(source.model_config)))  # the same model passes
