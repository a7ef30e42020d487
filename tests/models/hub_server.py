"""A local stand-in for the Hugging Face Hub's file API, enough for `huggingface_hub.snapshot_download`.

Serves, on 127.0.0.1 (a thread of the test process), the three calls snapshot_download makes in
huggingface_hub 2.x (read from its source: `HfApi.repo_info`, `HfApi.list_repo_tree`, `hf_hub_download`):

  GET  /api/models/{org}/{name}/revision/{rev}      -> {"id", "sha", "siblings"}
  GET  /api/models/{org}/{name}/tree/{rev}?recursive -> [{"type": "file", "path", "size", "oid"}]
  HEAD /{org}/{name}/resolve/{rev}/{file}           -> X-Repo-Commit, ETag, Content-Length
  GET  /{org}/{name}/resolve/{rev}/{file}           -> the bytes

with the Hub's error signalling: 404 + `X-Error-Code: RepoNotFound` / `RevisionNotFound` /
`EntryNotFound`, and for a gated repo 401 (no token) / 403 (another token) + `X-Error-Code: GatedRepo`
on file downloads unless the request carries `Authorization: Bearer <the repo's token>` (metadata stays
public, as on the Hub).
Every request path is recorded in `HubServer.requests`. `hold(filename, heads)` makes the first GET of
`filename` wait until `heads` HEAD requests for it have arrived (proof that downloads overlapped).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from urllib.parse import unquote, urlsplit


def commit_sha(files: dict[str, bytes]) -> str:
  """A deterministic 40-hex "commit hash" for a set of files."""
  h = hashlib.sha1()
  for name in sorted(files):
    h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
  return h.hexdigest()


def read_dir(path: str) -> dict[str, bytes]:
  """{relative path: bytes} of every file under `path` ("/"-separated)."""
  out = {}
  for root, _, names in os.walk(path):
    for name in names:
      full = os.path.join(root, name)
      out[os.path.relpath(full, path).replace(os.sep, "/")] = open(full, "rb").read()
  return out


class HubServer:
  """`with HubServer() as hub: hub.add(repo, files, ...)`; `hub.url` is the HF_ENDPOINT to use."""

  def __init__(self):
    self.repos: dict[str, dict[str, str]] = {}       # repo -> {branch/tag: commit sha}
    self.commits: dict[str, dict[str, bytes]] = {}   # commit sha -> files
    self.gated: dict[str, str] = {}                  # repo -> token that grants access
    self.requests: list[str] = []
    self._hold: tuple[str, int] | None = None
    self.overlapped = threading.Event()  # set when a held GET saw the HEADs it waited for
    self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
    self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
    self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

  def add(self, repo: str, files: dict[str, bytes], ref: str = "main", gated_token: str | None = None) -> str:
    """Publish `files` as a new commit of `repo` on branch/tag `ref`; returns the commit sha."""
    sha = commit_sha(files)
    self.commits[sha] = dict(files)
    self.repos.setdefault(repo, {})[ref] = sha
    if gated_token:
      self.gated[repo] = gated_token
    return sha

  def hold(self, filename: str, heads: int) -> None:
    self._hold = (filename, heads)

  def _wait_for_heads(self, filename: str, timeout: float = 150.0) -> None:
    """First GET of the held file: wait (polling) until enough HEADs for it were received."""
    if self._hold is None or self._hold[0] != filename:
      return
    heads = self._hold[1]
    self._hold = None
    for _ in range(int(timeout / 0.05)):
      if sum(r.startswith("HEAD ") and r.endswith("/" + filename) for r in self.requests) >= heads:
        self.overlapped.set()
        return
      threading.Event().wait(0.05)

  def __enter__(self) -> "HubServer":
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self.stop()

  def stop(self) -> None:
    self._server.shutdown()
    self._server.server_close()

  # ---------------------------------------------------------------------------------------- routing
  def _resolve(self, repo: str, rev: str) -> tuple[str | None, str | None]:
    """(commit sha, error code) for `rev` of `repo`."""
    if repo not in self.repos:
      return None, "RepoNotFound"
    refs = self.repos[repo]
    sha = refs.get(rev) or (rev if rev in refs.values() else None)
    return (sha, None) if sha else (None, "RevisionNotFound")

  def route(self, method: str, path: str, auth: str | None) -> tuple[int, dict[str, str], bytes]:
    parts = [unquote(p) for p in path.split("/") if p]
    if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
      repo, kind, rev = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
      sha, error = self._resolve(repo, rev)
      if error:
        return 404, {"X-Error-Code": error}, b""
      files = self.commits[sha]
      if kind == "revision":
        body = {"id": repo, "sha": sha, "private": False, "gated": "manual" if repo in self.gated else False,
                "siblings": [{"rfilename": f} for f in sorted(files)]}
      else:
        body = [{"type": "file", "path": f, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for f, data in sorted(files.items())]
      return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
    if len(parts) >= 5 and parts[2] == "resolve":
      repo, rev, filename = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
      sha, error = self._resolve(repo, rev)
      if error:
        return 404, {"X-Error-Code": error}, b""
      if repo in self.gated and auth != f"Bearer {self.gated[repo]}":
        status = 401 if auth is None else 403  # the Hub: 401 anonymous, 403 logged in without access
        return status, {"X-Error-Code": "GatedRepo", "X-Error-Message": f"Access to model {repo} is "
                     "restricted. You must have access to it and be authenticated to access it."}, b""
      data = self.commits[sha].get(filename)
      if data is None:
        return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha}, b""
      if method == "GET":
        self._wait_for_heads(filename)
      headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                 "Content-Length": str(len(data)), "Content-Type": "application/octet-stream"}
      return 200, headers, data
    return 404, {}, b""

  def _handler(self):
    hub = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def _serve(self, with_body: bool):
        hub.requests.append(f"{self.command} {self.path}")
        status, headers, body = hub.route(self.command, urlsplit(self.path).path,
                                          self.headers.get("Authorization"))
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
          self.send_header(key, value)
        self.end_headers()
        if with_body:
          self.wfile.write(body)

      def do_GET(self):  # noqa: N802 (http.server's naming)
        self._serve(True)

      def do_HEAD(self):  # noqa: N802
        self._serve(False)

      def log_message(self, *args):  # quiet
        pass

    return Handler
