"""`ModelLoadError`: a model source (file, directory or Hub id) that cannot be loaded.

Raised for damaged or incomplete model files (corrupt .gguf, unparsable or incomplete config.json,
truncated .safetensors shard, missing tokenizer file) and for Hub ids that cannot be fetched. The
message is one line naming the file or id, the problem and the fix; the CLIs (`simko_jax.main`,
`simko_jax.evaluate`) print it as `error: <message>` instead of a traceback.
"""

from __future__ import annotations


class ModelLoadError(ValueError):
  """A model source cannot be loaded; the message names it, the problem and the fix (one line)."""


class MissingModelFileError(ModelLoadError, FileNotFoundError):
  """A file a model needs does not exist (also a `FileNotFoundError`, as these were before)."""


def one_line(err: BaseException, limit: int = 300) -> str:
  """`err`'s message on one line (whitespace runs collapsed), cut to `limit` characters."""
  text = " ".join(str(err).split()) or type(err).__name__
  return text if len(text) <= limit else text[:limit - 3] + "..."
