"""RunCheckpointer faults in-process: missing, truncated or corrupted checkpoints, another model's
checkpoint, a full disk (sync and async saves) and unwritable directories."""

import errno
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath

from simko_jax.train import checkpoint as ckpt_lib
from simko_jax.train.checkpoint import CheckpointError, RunCheckpointer, load_policy, read_meta
from tests.faults import harness

MODEL = {"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "num_hidden_layers": 2,
         "head_dim": 4, "vocab_size": 16}
ABSTRACT = ({"w": jax.ShapeDtypeStruct((2, 3), jnp.float32)},
            {"m": jax.ShapeDtypeStruct((3,), jnp.float32)}, jax.ShapeDtypeStruct((2,), jnp.uint32))


def _save(ckpt: RunCheckpointer, step: int):
  return ckpt.save(step, {"w": jnp.full((2, 3), float(step))}, {"m": jnp.full((3,), float(step))},
                   jax.random.key(step), {"next": step}, {"model_config": MODEL})


def _written(directory, steps=(1, 2, 3), async_save=True) -> RunCheckpointer:
  ckpt = RunCheckpointer(str(directory), keep=5, every=1, async_save=async_save)
  for step in steps:
    _save(ckpt, step)
  ckpt.wait()
  return ckpt


def _restored_step(directory, **kw) -> int:
  step, params, _, _, data, _ = RunCheckpointer(str(directory), keep=5, every=1).restore(*ABSTRACT, **kw)
  assert float(params["w"][0, 0]) == step and data == {"next": step}
  return step


def _data_files(step_dir, item):
  return [p for p in (step_dir / item).rglob("*") if p.is_file() and p.parent.name == "d"]


def _truncate(step_dir, fraction):
  for path in _data_files(step_dir, "params"):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])


def _flip_byte(step_dir):
  for path in _data_files(step_dir, "train"):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "params_truncated_to_zero": lambda d: _truncate(d, 0.0),
    "params_truncated_half": lambda d: _truncate(d, 0.5),
    "optimizer_byte_flipped": _flip_byte,
    "params_metadata_deleted": lambda d: (d / "params" / "_METADATA").unlink(),
    "meta_json_garbage": lambda d: (d / "meta" / "metadata").write_text("{not json"),
    "data_state_deleted": lambda d: shutil.rmtree(d / "data"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_latest_step_falls_back_to_previous_and_is_set_aside(tmp_path, corruption):
  _written(tmp_path).close()
  CORRUPTIONS[corruption](tmp_path / "3")
  ckpt = RunCheckpointer(str(tmp_path), keep=5, every=1)
  step, params, _, _, data, _ = ckpt.restore(*ABSTRACT, model_config=MODEL)
  assert step == 2 and float(params["w"][0, 0]) == 2.0 and data == {"next": 2}
  assert (tmp_path / "3.unreadable").is_dir() and ckpt.all_steps() == [1, 2]
  assert _save(ckpt, 3)  # the resumed run can write step 3 again
  ckpt.close()
  assert _restored_step(tmp_path) == 3


def test_every_step_corrupt_is_a_clear_error(tmp_path):
  _written(tmp_path, steps=(1, 2)).close()
  for step in (1, 2):
    _truncate(tmp_path / str(step), 0.0)
  with pytest.raises(CheckpointError, match=r"no readable checkpoint in .*step 2: .*; step 1: "):
    RunCheckpointer(str(tmp_path), keep=5, every=1).restore(*ABSTRACT)


def test_missing_checkpoint_directory_or_step(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(CheckpointError, match="does not exist"):
    read_meta(str(missing))
  with pytest.raises(CheckpointError, match="does not exist"):
    load_policy(str(missing))
  with pytest.raises(CheckpointError, match="no complete checkpoint"):
    RunCheckpointer(str(tmp_path / "empty"), keep=5, every=1).restore(*ABSTRACT)


def test_checkpoint_of_another_model_is_refused_before_reading_arrays(tmp_path):
  _written(tmp_path).close()
  other = dict(MODEL, hidden_size=16, head_dim=8)
  with pytest.raises(CheckpointError, match=r"written for a different model \(hidden_size: "
                                            r"checkpoint 8 vs this run 16, head_dim: checkpoint 4 "
                                            r"vs this run 8\): use the model config"):
    RunCheckpointer(str(tmp_path), keep=5, every=1).restore(*ABSTRACT, model_config=other)
  assert sorted(os.listdir(tmp_path)) == ["1", "2", "3"]  # nothing was set aside


def test_cli_resume_with_another_model_shape_is_refused(tmp_path, reference, cache_dir):
  out = tmp_path / "run"
  shutil.copytree(reference, out)
  rc, text = harness.run(out, cache_dir=cache_dir, **{"model.random_preset": "tiny_qwen3"})
  assert rc == 1 and "Traceback" not in text, text[-3000:]
  assert text.strip().splitlines()[-1].startswith(
      f"error: the checkpoint {out}/checkpoints/{harness.STEPS} was written for a different model "
      "(architectures: checkpoint ['LlamaForCausalLM'] vs this run ['Qwen3ForCausalLM'], model_type: "
      "checkpoint 'llama' vs this run 'qwen3', head_dim: checkpoint 16 vs this run 32)")
  assert harness.complete_steps(out) == harness.complete_steps(reference)  # nothing set aside


def _full_disk_for_step(monkeypatch, step):
  original = epath.Path.write_text

  def write_text(self, *args, **kwargs):
    if f"/{step}.orbax-checkpoint-tmp" in str(self):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    return original(self, *args, **kwargs)
  monkeypatch.setattr(epath.Path, "write_text", write_text)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # Orbax thread noise
@pytest.mark.parametrize("async_save", [False, True])
def test_disk_full_at_save_is_reported_and_previous_checkpoint_stays(tmp_path, monkeypatch,
                                                                     async_save):
  ckpt = _written(tmp_path, steps=(1, 2), async_save=async_save)
  _full_disk_for_step(monkeypatch, 3)
  message = (r"saving step 3 to .* failed.*No space left on device.*Earlier checkpoints are "
             r"untouched \(latest complete step: 2\)")
  with pytest.raises(CheckpointError, match=message):
    _save(ckpt, 3)
    ckpt.wait()  # an async save fails in the background: reported by the next wait() or save()
  ckpt.close()
  monkeypatch.undo()  # space freed
  assert _restored_step(tmp_path) == 2
  ckpt = RunCheckpointer(str(tmp_path), keep=5, every=1)
  assert _save(ckpt, 3)
  ckpt.close()
  assert _restored_step(tmp_path) == 3


def test_not_enough_free_space_is_refused_at_start(tmp_path, monkeypatch):
  ckpt = RunCheckpointer(str(tmp_path), keep=5, every=1)
  ckpt.check_free_space(1024)
  monkeypatch.setattr(ckpt_lib.storage.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(1, 1, 100))
  with pytest.raises(CheckpointError, match=r"0.0 MiB free but one checkpoint needs about 1.0 MiB"):
    ckpt.check_free_space(2**20)
  ckpt.close()


def test_unwritable_checkpoint_directory_is_refused_at_start(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  with pytest.raises(CheckpointError, match="is not writable"):
    RunCheckpointer(str(blocker / "checkpoints"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_checkpoint_directory_is_refused_at_start(tmp_path):
  directory = tmp_path / "ro"
  directory.mkdir()
  directory.chmod(0o500)
  try:
    with pytest.raises(CheckpointError, match="is not writable"):
      RunCheckpointer(str(directory / "checkpoints"))
  finally:
    directory.chmod(0o700)
