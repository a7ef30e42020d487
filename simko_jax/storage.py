"""One path layer for every file a run reads or writes: local paths and `gs://` URLs alike.

Everything goes through `etils.epath.Path` (what Orbax uses): local paths are plain `pathlib` paths
(relative paths stay relative to the working directory, exactly as before), `gs://bucket/dir` goes
through fsspec's `gcsfs` backend. The few helpers here cover what the rest of the package needs.

Semantics that differ on object stores (GCS) and how they are handled:
  * no append: `AppendFile.append` on a remote path rewrites the whole object (read once, then kept
    in memory); a GCS object is replaced atomically, so a killed writer leaves the old or the new content,
    never a torn line. Fine for metrics/event logs (KBs to a few MBs).
  * no rename of a directory in one step: `rename` moves every object (copy + delete); used only for
    rare maintenance (setting an unreadable checkpoint step aside).
  * no local free space: `free_bytes` returns None for remote paths (nothing to check).
  * libraries that need a real local file (safetensors' mmap, the GGUF reader, tokenizer files):
    `local_copy` downloads a remote file or directory into a local cache first (a cached file is
    reused while its size matches the object's).
  * listings are never cached (see `_no_listing_cache`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from typing import Union

from etils import epath

PathLike = Union[str, os.PathLike, epath.Path]


def _no_listing_cache() -> None:
  """gcsfs caches directory listings for the life of the process by default; other hosts (and a
  resumed run's previous process) change the bucket behind it, so a cached listing would hide new
  checkpoint steps or show deleted ones. Listing afresh costs one request per listing."""
  import fsspec.config
  fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)


_no_listing_cache()

# Where `local_copy` stages remote model files (one sub-directory per remote URL).
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "simko_jax", "remote")


class StorageError(OSError):
  """A path cannot be read or written (unreachable or missing bucket, no permission); one clear line."""


def _text(path: PathLike) -> str:
  return str(path) if isinstance(path, epath.Path) else os.fspath(path)


def is_remote(path: PathLike) -> bool:
  """True for URLs (`gs://...`, `s3://...`); False for local paths, relative or absolute."""
  return "://" in _text(path)


def absolute(path: PathLike) -> str:
  """The absolute form of a local path (as `os.path.abspath`), a URL unchanged; as a string."""
  return _text(path) if is_remote(path) else os.path.abspath(_text(path))


def as_path(path: PathLike) -> epath.Path:
  """`epath.Path` of a local path or URL (a local relative path stays relative)."""
  return epath.Path(path)


def join(base: PathLike, *parts: str) -> epath.Path:
  return epath.Path(base).joinpath(*parts)


def bucket_of(path: PathLike) -> str:
  """`gs://bucket` of a URL (for messages); the path itself when local."""
  text = _text(path)
  if not is_remote(text):
    return text
  scheme, rest = text.split("://", 1)
  return f"{scheme}://{rest.split('/', 1)[0]}"


def makedirs(path: PathLike) -> epath.Path:
  """Creates `path` and its parents (a no-op on object stores, where directories are implicit)."""
  p = epath.Path(path)
  p.mkdir(parents=True, exist_ok=True)
  return p


def exists(path: PathLike) -> bool:
  return epath.Path(path).exists()


def isdir(path: PathLike) -> bool:
  return epath.Path(path).is_dir()


def isfile(path: PathLike) -> bool:
  p = epath.Path(path)
  return p.exists() and not p.is_dir()


def listdir(path: PathLike) -> list[str]:
  """Names (not paths) of the entries of a directory, sorted."""
  return sorted(p.name for p in epath.Path(path).iterdir())


def read_text(path: PathLike) -> str:
  return epath.Path(path).read_text(encoding="utf-8")


def read_bytes(path: PathLike) -> bytes:
  return epath.Path(path).read_bytes()


def write_atomic(path: PathLike, data: str | bytes) -> None:
  """Writes `data` so that readers see the old or the new content, never a partial file.

  Local: a temporary file in the same directory, fsync, `os.replace`. Remote: one object upload (GCS
  replaces an object atomically on completion of the upload).
  """
  raw = data.encode("utf-8") if isinstance(data, str) else data
  if is_remote(path):
    epath.Path(path).write_bytes(raw)
    return
  target = os.fspath(path)
  directory = os.path.dirname(target) or "."
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(raw)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, target)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


class AppendFile:
  """A text file that grows by whole lines: `append(text)` is durable when it returns.

  Local: open in append mode, flush, fsync (a crash loses at most the line being written). Remote (no
  append on object stores): the content is read once, kept in memory, and the whole object is rewritten
  on every append (atomic per object, see module doc).
  """

  def __init__(self, path: PathLike):
    self.path = epath.Path(path)
    self._remote = is_remote(path)
    self._content: str | None = None

  def append(self, text: str) -> None:
    if not self._remote:
      with open(os.fspath(self.path), "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
      return
    if self._content is None:
      self._content = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
    self._content += text
    self.path.write_text(self._content, encoding="utf-8")


def rename(src: PathLike, dst: PathLike) -> None:
  """Renames a file or directory (remote directories: every object moved, not atomic)."""
  if not is_remote(src):
    os.rename(os.fspath(src), os.fspath(dst))
    return
  source = epath.Path(src)
  if not source.is_dir():  # copy, then delete: object stores have no rename
    epath.Path(dst).write_bytes(source.read_bytes())
    source.unlink()
    return
  for child in source.iterdir():
    rename(child, epath.Path(dst) / child.name)
  if source.exists():
    source.rmtree(missing_ok=True)


def free_bytes(path: PathLike) -> int | None:
  """Free bytes on the local disk holding `path`; None for remote paths (no such limit to check)."""
  if is_remote(path):
    return None
  return shutil.disk_usage(os.fspath(path)).free


def check_writable(directory: PathLike, what: str = "config.out_dir") -> epath.Path:
  """Creates `directory`, writes and deletes a probe file; StorageError (one line) if that fails.

  Run before any training so an unreachable, missing or read-only bucket is reported up front, not
  as a failed checkpoint hours later. The probe name is unique per process and host.
  """
  import logging
  import socket
  p = epath.Path(directory)
  probe = p / f".write_probe.{socket.gethostname()}.{os.getpid()}"
  if not is_remote(directory):
    try:
      os.makedirs(_text(directory), exist_ok=True)
    except OSError as err:
      raise StorageError(f"{what} = {_text(directory)!r} cannot be created: {err}; choose a writable "
                         "directory") from err
  gcsfs_log = logging.getLogger("gcsfs")  # logs a traceback per failed retry: the one line is ours
  level = gcsfs_log.level
  gcsfs_log.setLevel(logging.CRITICAL)
  try:
    p.mkdir(parents=True, exist_ok=True)
    probe.write_text("ok")
    probe.unlink()
  except Exception as err:  # noqa: BLE001 - gcsfs/aiohttp/google-auth errors are not all OSError
    raise StorageError(describe_failure(directory, err, what)) from err
  finally:
    gcsfs_log.setLevel(level)
  return p


def describe_failure(path: PathLike, err: BaseException, what: str) -> str:
  """One line naming the path, the cause and the fix, for an error raised while using `path`."""
  detail = " ".join(f"{type(err).__name__}: {err}".split())[:300]
  if not is_remote(path):
    return f"{what} = {_text(path)!r} is not writable: {err}; choose a writable directory"
  bucket = bucket_of(path)
  return (f"{what} = {str(path)!r}: cannot write to bucket {bucket} ({detail}). Check that the bucket "
          f"exists (gcloud storage buckets create {bucket}), that this machine can reach it, and that "
          "the credentials (gcloud auth application-default login; on TPU VMs the VM's service account) "
          "may write objects there.")


def local_copy(path: PathLike) -> str:
  """A local filesystem path holding the content of `path` (a file or a flat directory tree).

  Local paths are returned unchanged. A remote file or directory is downloaded once into
  `CACHE_DIR/<hash of the URL>/<name>`; files already there with the same size are not fetched again.
  """
  if not is_remote(path):
    return os.fspath(path)
  source = epath.Path(path)
  key = hashlib.sha256(str(source).encode()).hexdigest()[:16]
  target = os.path.join(CACHE_DIR, key, source.name)
  try:
    _download(source, target)
  except Exception as err:  # noqa: BLE001
    raise StorageError(f"cannot read {str(path)!r} from bucket {bucket_of(path)} "
                       f"({type(err).__name__}: {str(err)[:200]}): check the path and credentials") from err
  return target


def upload_tree(local_dir: str, remote_dir: PathLike) -> None:
  """Copies the files under local directory `local_dir` to `remote_dir` (same relative layout)."""
  for root, _, files in os.walk(local_dir):
    rel = os.path.relpath(root, local_dir)
    for name in sorted(files):
      parts = [name] if rel == "." else [*rel.split(os.sep), name]
      dst = join(remote_dir, *parts)
      with open(os.path.join(root, name), "rb") as f:
        dst.write_bytes(f.read())


def _download(source: epath.Path, target: str) -> None:
  if not source.exists():
    raise FileNotFoundError(f"{source} does not exist")
  if source.is_dir():
    os.makedirs(target, exist_ok=True)
    for child in source.iterdir():
      _download(child, os.path.join(target, child.name))
    return
  size = source.stat().length
  if os.path.isfile(target) and os.path.getsize(target) == size:
    return
  os.makedirs(os.path.dirname(target), exist_ok=True)
  write_atomic(target, source.read_bytes())
