#!/usr/bin/env bash
# simko_jax on one GPU host (e.g. 8 x H100, one JAX process driving all 8), detached from the terminal:
# the run survives the SSH session or the laptop going away (launch/detach.sh: setsid + nohup).
#
#   launch/gpu_host.sh start [--config.a.b=v ...]   # start the trainer detached; returns at once
#   launch/gpu_host.sh status                       # running or not, last log line, last step
#   launch/gpu_host.sh logs [--follow]              # the log (LOG_LINES lines, default 40) or follow it
#   launch/gpu_host.sh stop                         # SIGTERM: the trainer saves, exits 0; waits for it
#   launch/gpu_host.sh resume                       # start again, same config + overrides + out_dir:
#                                                   # the trainer resumes from its newest checkpoint
#
# Settings (environment): CONFIG (default configs/qwen25_math7b_h100x8.py), OUT_DIR (default
# runs/<config name>), RUN_NAME (default the config name), RUN_DIR (the log / pid files, default
# ~/simko_runs/<RUN_NAME>), PYTHON (default .venv/bin/python; install once with
# `bash scripts/ensure_env.sh runtime && .venv/bin/pip install 'jax[cuda12]==0.10.2'`), STOP_TIMEOUT
# (seconds `stop` waits, default 900), HF_TOKEN (gated Hub models), HF_HUB_OFFLINE=1 (use only the local
# Hub cache; default: Hub ids are downloaded). See launch/README.md.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG="${CONFIG:-configs/qwen25_math7b_h100x8.py}"
RUN_NAME="${RUN_NAME:-$(basename "${CONFIG}" .py)}"
OUT_DIR="${OUT_DIR:-runs/${RUN_NAME}}"
RUN_DIR="${RUN_DIR:-${HOME}/simko_runs/${RUN_NAME}}"
PYTHON="${PYTHON:-.venv/bin/python}"
DETACH=(bash "${REPO_ROOT}/launch/detach.sh")

main() {
  local cmd="${1:-}"
  shift || true
  cd "${REPO_ROOT}"
  case "${cmd}" in
    start)
      "${DETACH[@]}" start "${RUN_DIR}" -- env HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-0}" "${PYTHON}" \
        -m simko_jax.main --config "${CONFIG}" --config.out_dir="${OUT_DIR}" "$@"
      ;;
    status) "${DETACH[@]}" status "${RUN_DIR}" "${OUT_DIR}/metrics.jsonl" ;;
    logs) "${DETACH[@]}" logs "${RUN_DIR}" "$@" ;;
    stop | resume) "${DETACH[@]}" "${cmd}" "${RUN_DIR}" ;;
    *)
      echo "usage: $0 {start [--config.a.b=value ...]|status|logs [--follow]|stop|resume}" >&2
      exit 2
      ;;
  esac
}

main "$@"
