"""README's "Run on a TPU pod or a GPU host" commands stay true: every config, module, flag and launch
verb they name exists, and the dry run they start with is run (tests/train/test_dry_run.py runs target
dry runs; here only the names). The commands that need a cloud are stub-tested in tests/launch/."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pod_commands() -> list[list[str]]:
  """The shell commands of the section's bash block, continuation lines joined, comments dropped."""
  text = open(os.path.join(ROOT, "README.md")).read()
  section = text.split("## Run on a TPU pod or a GPU host", 1)[1].split("\n## ", 1)[0]
  block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
  commands = []
  for line in block.splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
      commands.extend(shlex.split(part) for part in line.split("&&"))
  return commands


def _verbs(script: str) -> set[str]:
  """The verbs a launch script's `case` dispatches on."""
  text = open(os.path.join(ROOT, script)).read()
  main = text[text.index("main() {"):]
  verbs = set()
  for pattern in re.findall(r"^\s+([a-z][a-z |]*)\)", main, flags=re.M):
    verbs.update(v.strip() for v in pattern.split("|"))
  return verbs


def test_pod_section_names_only_what_exists():
  commands = _pod_commands()
  assert len(commands) >= 15, commands
  modules = set()
  for argv in commands:
    if argv[0] == "export":
      for assignment in argv[1:]:
        if assignment.startswith("CONFIG="):
          assert os.path.isfile(os.path.join(ROOT, assignment.split("=", 1)[1])), assignment
      continue
    while argv and "=" in argv[0]:  # leading VAR=value assignments
      argv = argv[1:]
    if argv[0].startswith("launch/"):
      assert argv[1] in _verbs(argv[0]), (argv, _verbs(argv[0]))
    elif argv[0] == "python":
      assert argv[1] == "-m"
      modules.add(argv[2])
      if "--config" in argv:
        assert os.path.isfile(os.path.join(ROOT, argv[argv.index("--config") + 1])), argv
    elif argv[0] == "bash":
      assert os.path.isfile(os.path.join(ROOT, argv[1])), argv
  assert {"simko_jax.main", "simko_jax.evaluate", "simko_jax.export"} <= modules, modules


@pytest.mark.parametrize("module,flags", [
    ("simko_jax.evaluate", ["--checkpoint", "--config"]),
    ("simko_jax.export", ["--checkpoint", "--out", "--dtype"]),
])
def test_pod_section_flags_are_accepted(module, flags):
  """Each flag the section passes appears in the module's --help (an unknown flag is an error)."""
  used = {a.split("=", 1)[0] for argv in _pod_commands() if "-m" in argv and module in argv
          for a in argv if a.startswith("--") and not a.startswith("--config.")}
  assert set(flags) <= used, used
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
  help_text = out.stdout + out.stderr
  for flag in used:
    assert flag in help_text, (flag, help_text[-2000:])
