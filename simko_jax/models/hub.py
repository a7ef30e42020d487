"""Model weights from the Hugging Face Hub: `org/name[@revision]` -> a local snapshot directory.

`parse_hub_id` tells a Hub id from a local path (an existing path always wins); `download` fetches the
files a `load_pretrained` + `Tokenizer.load` of the snapshot reads, with `huggingface_hub`, into its
cache (`cache_dir`, default `HF_HUB_CACHE`, i.e. ~/.cache/huggingface/hub) and returns the snapshot
directory; `cached_file` looks a file up in that cache without any network call (for `--dry_run`).

What is downloaded (`ALLOW_PATTERNS`, top level of the repo only): config.json, generation_config.json,
the tokenizer files, every *.safetensors shard and its index. Never *.bin / *.pth / *.gguf, nor any
sub-folder (e.g. Llama's original/ with the consolidated .pth weights).

Token: whatever huggingface_hub resolves (`HF_TOKEN`, else the token saved by `hf auth login`).
Endpoint: `HF_ENDPOINT` (read when `download` runs). Offline (`HF_HUB_OFFLINE=1`): nothing is
requested; a revision already in the cache resolves through its `refs/` entry, anything else fails.

Several processes on one host may share a cache: huggingface_hub takes a file lock per blob, so one
process downloads each file while the others wait for it, and a finished snapshot is only read. Each
host downloads into its own (local-disk) cache; there is no cross-host coordination. Every host needs
every shard: params are sharded *within* each tensor (fsdp / tensor axes) and a stacked [layers, ...]
param spans all layers, so each host reads a slice of every tensor, hence of every safetensors file.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re

from simko_jax.models.errors import MissingModelFileError, ModelLoadError, one_line

TOKENIZER_PATTERNS = ("config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                      "special_tokens_map.json", "chat_template.jinja",
                      "chat_template.json")  # what `Tokenizer.load` reads (tokenizer.model: SentencePiece)
ALLOW_PATTERNS = TOKENIZER_PATTERNS + ("generation_config.json", "*.safetensors",
                                      "model.safetensors.index.json")
IGNORE_PATTERNS = ("*/*",)  # fnmatch's "*" crosses "/": this drops every file inside a sub-folder

# huggingface_hub's repo-id rule (one "/", [\w.-] characters, no "--" or ".."), plus "@<revision>".
_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(?:@(?P<rev>[^@\s]+))?")


@dataclasses.dataclass(frozen=True)
class HubId:
  """A model repo on the Hub and an optional revision (branch, tag or commit hash; None = "main")."""
  repo_id: str
  revision: str | None = None

  def __str__(self) -> str:
    return self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_hub_id(name: str) -> HubId | None:
  """The `HubId` of "org/name" or "org/name@revision"; None for anything else or an existing path."""
  match = _HUB_ID.fullmatch(name)
  if match is None or os.path.exists(name) or "--" in match["repo"] or ".." in match["repo"]:
    return None
  if match["repo"].endswith((".gguf", ".safetensors", ".json")):
    return None  # a file path that does not exist, not a repo
  return HubId(match["repo"], match["rev"])


def wanted(filename: str, patterns: tuple[str, ...] = ALLOW_PATTERNS) -> bool:
  """Whether `download` fetches the repo file `filename` (a "/"-separated path in the repo)."""
  return (any(fnmatch.fnmatch(filename, p) for p in patterns)
          and not any(fnmatch.fnmatch(filename, p) for p in IGNORE_PATTERNS))


def cache_root(cache_dir: str | None) -> str:
  """The Hub cache directory in effect: `cache_dir`, else huggingface_hub's (`HF_HUB_CACHE`)."""
  from huggingface_hub import constants
  return os.path.expanduser(cache_dir) if cache_dir else constants.HF_HUB_CACHE


def download(hub_id: HubId, cache_dir: str | None = None, *, weights: bool = True) -> str:
  """The local snapshot directory of `hub_id` (downloaded into `cache_root(cache_dir)` if needed).

  `weights=False` fetches only `TOKENIZER_PATTERNS` (for a tokenizer of a trained run: no weights).

  Raises `ModelLoadError` (one line: the id, the problem, the fix) for a repo that does not exist, a
  gated repo without access, a missing revision, an unreachable Hub / offline mode with nothing
  cached, a failed write, or a snapshot with no config.json or no safetensors weights.
  """
  import huggingface_hub
  endpoint = os.environ.get("HF_ENDPOINT") or None
  try:
    path = huggingface_hub.snapshot_download(
        hub_id.repo_id, revision=hub_id.revision, cache_dir=cache_root(cache_dir), endpoint=endpoint,
        allow_patterns=list(ALLOW_PATTERNS if weights else TOKENIZER_PATTERNS),
        ignore_patterns=list(IGNORE_PATTERNS))
  except Exception as err:  # noqa: BLE001 - every failure becomes one line naming the id and the fix
    raise ModelLoadError(describe_failure(hub_id, err, cache_root(cache_dir), endpoint)) from err
  files = os.listdir(path)
  if "config.json" not in files:
    raise MissingModelFileError(f"Hub model '{hub_id}' has no config.json (snapshot {path}): it is "
                                "not a transformers checkpoint; use a repo with config.json + safetensors")
  if weights and not any(f.endswith(".safetensors") for f in files):
    raise MissingModelFileError(f"Hub model '{hub_id}' has no *.safetensors weights (snapshot {path}): "
                                "simko_jax reads safetensors only (not .bin/.pth); use a repo that has them")
  return path


def describe_failure(hub_id: HubId, err: Exception, cache: str, endpoint: str | None) -> str:
  """One line for a failed `snapshot_download` of `hub_id`: what went wrong and how to fix it."""
  from huggingface_hub import constants, errors
  site = (endpoint or constants.ENDPOINT).rstrip("/")
  repo, rev = hub_id.repo_id, hub_id.revision or "main"
  if isinstance(err, errors.GatedRepoError):
    from huggingface_hub import get_token  # local lookup: HF_TOKEN, else the saved token
    if get_token():
      return (f"Hub model '{repo}' is gated and the token in use (HF_TOKEN or `hf auth login`) has no "
              f"access to it: accept its licence at {site}/{repo} with that token's account, or set "
              "HF_TOKEN to a token of an account that did")
    return (f"Hub model '{repo}' is gated and this machine has no access to it: accept its licence at "
            f"{site}/{repo} (logged in), then set HF_TOKEN to a read token of that account "
            "(or run `hf auth login`)")
  if isinstance(err, errors.RepositoryNotFoundError):
    return (f"'{hub_id}' is not a local path and {site} has no model repo '{repo}' (repository not "
            "found): check the id (org/name) or the path; for a private repo set HF_TOKEN")
  if isinstance(err, errors.RevisionNotFoundError):
    return (f"Hub model '{repo}' has no revision '{rev}': use an existing branch, tag or commit hash "
            f"(see {site}/{repo}/commits/main)")
  if isinstance(err, errors.LocalEntryNotFoundError) and constants.is_offline_mode():
    return (f"Hub model '{hub_id}' is not in the Hub cache {cache} and HF_HUB_OFFLINE=1 forbids "
            "downloading it: run once without HF_HUB_OFFLINE (with network access) to fill the cache, "
            "or set model.hub_cache_dir to a cache that has it")
  if isinstance(err, errors.LocalEntryNotFoundError):
    cause = one_line(err.__cause__ or err, 160)
    return (f"cannot download Hub model '{hub_id}': the Hub at {site} is unreachable and the model is "
            f"not in the cache {cache} ({cause}): check the network and HF_ENDPOINT, or fill the "
            "cache once from a machine that reaches the Hub")
  if isinstance(err, errors.HfHubHTTPError):
    status = getattr(err.response, "status_code", "?")
    return (f"the Hub at {site} refused to serve '{hub_id}' (HTTP {status}: {one_line(err, 160)}): "
            "check HF_TOKEN's permissions, or retry later if the Hub is down")
  if isinstance(err, OSError):
    return (f"downloading Hub model '{hub_id}' into {cache} failed ({one_line(err, 160)}): check the "
            "free space and permissions there, or set model.hub_cache_dir to another local directory")
  return f"downloading Hub model '{hub_id}' failed ({type(err).__name__}: {one_line(err, 200)})"


def cached_file(hub_id: HubId, filename: str, cache_dir: str | None = None) -> str | None:
  """Path of `filename` of `hub_id` in the Hub cache, or None; never touches the network."""
  from huggingface_hub import try_to_load_from_cache
  found = try_to_load_from_cache(hub_id.repo_id, filename, cache_dir=cache_root(cache_dir),
                                 revision=hub_id.revision)
  return found if isinstance(found, str) else None


def main(argv: list[str] | None = None) -> int:
  """`python -m simko_jax.models.hub <org/name[@revision]> [--cache_dir DIR]`: fill the Hub cache
  with exactly the files a run of that id reads (e.g. on a login node before an offline job);
  prints the snapshot directory, or one `error: ...` line (exit code 1)."""
  import argparse
  import sys
  parser = argparse.ArgumentParser(prog="python -m simko_jax.models.hub", description=main.__doc__)
  parser.add_argument("hub_id", help="org/name or org/name@revision")
  parser.add_argument("--cache_dir", default="", help="Hub cache (default: $HF_HUB_CACHE)")
  args = parser.parse_args(argv)
  hub_id = parse_hub_id(args.hub_id)
  if hub_id is None:
    sys.exit(f"error: {args.hub_id!r} is not a Hub model id (org/name[@revision]) or is a local path")
  try:
    print(download(hub_id, args.cache_dir or None))
  except ModelLoadError as err:
    sys.exit(f"error: {err}")
  return 0


if __name__ == "__main__":
  main()
