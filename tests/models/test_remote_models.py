"""Model files in a bucket (fake-gcs-server): export to gs:// and load back from it.

safetensors and GGUF readers memory-map local files, so gs:// model paths are downloaded once into a
local cache (`storage.local_copy`); the loaded params must equal the exported ones exactly.
"""

import jax
import numpy as np
import pytest
from flax import nnx

from simko_jax import storage
from simko_jax.models import load_pretrained, save_hf
from simko_jax.models.config import tiny_qwen2
from simko_jax.models.transformer import Transformer
from simko_jax.train.model_source import resolve_checkpoint


def test_export_to_bucket_and_load_back(gcs, tmp_path, monkeypatch):
  monkeypatch.setattr(storage, "CACHE_DIR", str(tmp_path / "cache"))
  model = Transformer(tiny_qwen2(), rngs=nnx.Rngs(0))
  url = f"{gcs.bucket}/models/tiny-qwen2"
  save_hf(model, url)
  assert storage.listdir(url) == ["config.json", "model.safetensors"]
  local = resolve_checkpoint(url)
  assert local.startswith(str(tmp_path / "cache"))
  again = load_pretrained(url)
  cfg = again.cfg
  assert cfg.num_layers == model.cfg.num_layers
  for got, want in zip(jax.tree.leaves(nnx.state(again, nnx.Param)),
                       jax.tree.leaves(nnx.state(model, nnx.Param))):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_missing_model_in_bucket_is_one_line(gcs):
  with pytest.raises(FileNotFoundError, match="does not exist in bucket gs://simko-test"):
    resolve_checkpoint(f"{gcs.bucket}/models/nope")
  with pytest.raises(storage.StorageError, match="cannot read 'gs://simko-test/models/nope'"):
    load_pretrained(f"{gcs.bucket}/models/nope")
