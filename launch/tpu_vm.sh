#!/usr/bin/env bash
# Cloud TPU VM (single host or pod slice) lifecycle for simko_jax. The trainer runs detached on every
# worker (launch/detach.sh: setsid + nohup), so closing the laptop or losing SSH does not stop it.
#
#   launch/tpu_vm.sh create          # gcloud compute tpus tpu-vm create (--spot if SPOT=1)
#   launch/tpu_vm.sh queue           # a queued resource instead (waits for capacity): --spot if SPOT=1,
#                                    # --best-effort if BEST_EFFORT=1 (gcloud alpha); QUEUED=1 for the rest
#   launch/tpu_vm.sh setup           # copy this checkout to every worker; uv installs Python 3.11, makes
#                                    # .venv with the pinned requirements + jax[tpu]
#   launch/tpu_vm.sh run [--config.a.b=v ...]   # start the trainer detached on every worker; returns
#   launch/tpu_vm.sh status          # the TPU's state, then per worker: running or not, last log line,
#                                    # last step (worker 0, from OUT_DIR/metrics.jsonl)
#   launch/tpu_vm.sh logs [--worker N] [--follow]   # one worker's log (default worker 0)
#   launch/tpu_vm.sh stop            # SIGTERM on every worker, wait: the trainer saves and exits 0
#   launch/tpu_vm.sh resume          # start again with the same config, overrides and OUT_DIR (the
#                                    # trainer resumes from the newest checkpoint); if the TPU was
#                                    # preempted or is gone: delete, create/queue, setup, run first
#   launch/tpu_vm.sh ssh | delete
#
# Settings (environment): TPU_NAME, ZONE, ACCELERATOR_TYPE (e.g. v5p-128, v5litepod-64, v4-32),
# RUNTIME_VERSION, PROJECT (optional), SPOT=1, BEST_EFFORT=1, QUEUED=1 (the TPU is a queued resource:
# `resume` and `delete` act on it), CONFIG (a configs/*.py file), OUT_DIR (one directory every
# worker sees at the same path, e.g. a gs:// bucket or a gcsfuse / Filestore mount: Orbax writes one
# checkpoint from all hosts there), RUN_NAME (default: the config name; logs go to
# ~/simko_runs/<RUN_NAME>/worker-<i>.log on each worker), REMOTE_DIR (checkout location on the
# workers), PYTHON_VERSION (default 3.11), STOP_TIMEOUT. See launch/README.md.
# HF_TOKEN (for gated Hub models), HF_HUB_OFFLINE=1 (workers use only their Hub cache).
set -euo pipefail

TPU_NAME="${TPU_NAME:-simko-tpu}"
ZONE="${ZONE:-us-east5-a}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v5p-128}"
RUNTIME_VERSION="${RUNTIME_VERSION:-v2-alpha-tpuv5}"
CONFIG="${CONFIG:-configs/qwen25_math7b_tpu_v5p_128.py}"
RUN_NAME="${RUN_NAME:-$(basename "${CONFIG}" .py)}"
OUT_DIR="${OUT_DIR:-/mnt/simko/runs/${RUN_NAME}}"
REMOTE_DIR="${REMOTE_DIR:-simko_jax}"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
STATE_DIR="${STATE_DIR:-${HOME}/.simko_launch}"   # the last `run`'s overrides, for `resume`
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN_DIR="simko_runs/${RUN_NAME}"   # on each worker, relative to its home directory
# The worker index from the TPU metadata server (0 if unreachable: a single-host slice).
WORKER_ID_CMD="export WORKER_ID=\$(curl -sf -H Metadata-Flavor:Google http://metadata.google.internal/\
computeMetadata/v1/instance/attributes/agent-worker-number || echo 0)"

gcloud_cmd() {
  # gcloud_cmd [alpha] GROUP... : `gcloud [alpha] compute tpus GROUP ... --zone --project`.
  local args=()
  if [[ "$1" == "alpha" ]]; then
    args+=(alpha)
    shift
  fi
  args+=(compute tpus "$@" --zone="${ZONE}")
  if [[ -n "${PROJECT:-}" ]]; then
    args+=(--project="${PROJECT}")
  fi
  gcloud "${args[@]}"
}

gcloud_tpu() { gcloud_cmd tpu-vm "$@"; }

on_workers() {
  # on_workers WORKERS COMMAND: run COMMAND in REMOTE_DIR on the given workers ("all" or an index).
  gcloud_tpu ssh "${TPU_NAME}" --worker="$1" --command="cd ${REMOTE_DIR} && ${WORKER_ID_CMD} && $2"
}

jax_version() {
  sed -n 's/^jax==\(.*\)$/\1/p' "${REPO_ROOT}/requirements.txt"
}

create() {
  local extra=()
  if [[ "${SPOT:-0}" == "1" ]]; then
    extra+=(--spot)
  fi
  gcloud_tpu create "${TPU_NAME}" --accelerator-type="${ACCELERATOR_TYPE}" \
    --version="${RUNTIME_VERSION}" "${extra[@]}"
}

queue() {
  # A queued resource named like its node; --best-effort exists in `gcloud alpha` only.
  local alpha=() extra=()
  if [[ "${BEST_EFFORT:-0}" == "1" ]]; then
    alpha=(alpha)
    extra+=(--best-effort)
  elif [[ "${SPOT:-0}" == "1" ]]; then
    extra+=(--spot)
  fi
  gcloud_cmd "${alpha[@]}" queued-resources create "${TPU_NAME}" --node-id="${TPU_NAME}" \
    --accelerator-type="${ACCELERATOR_TYPE}" --runtime-version="${RUNTIME_VERSION}" "${extra[@]}"
}

wait_until_active() {
  local state
  while true; do
    state="$(gcloud_cmd queued-resources describe "${TPU_NAME}" --format='value(state.state)')"
    echo "queued resource ${TPU_NAME}: ${state}"
    case "${state}" in
      ACTIVE) return 0 ;;
      FAILED | SUSPENDED) echo "error: queued resource ${TPU_NAME} is ${state}: see \
'gcloud compute tpus queued-resources describe ${TPU_NAME}'; delete it and queue again" >&2; exit 1 ;;
    esac
    sleep "${POLL_S:-60}"
  done
}

setup() {
  local tarball
  tarball="$(mktemp -d)/simko_jax.tar.gz"
  tar -C "${REPO_ROOT}" --exclude=.venv --exclude=runs --exclude=.git -czf "${tarball}" .
  gcloud_tpu scp "${tarball}" "${TPU_NAME}:simko_jax.tar.gz" --worker=all
  # Base images ship Ubuntu 22.04's Python 3.10; uv (from PyPI, or its standalone installer where the
  # image has no pip) installs a standalone 3.11. Both put uv in ~/.local/bin.
  gcloud_tpu ssh "${TPU_NAME}" --worker=all --command="set -e; mkdir -p ${REMOTE_DIR} && \
tar -C ${REMOTE_DIR} -xzf simko_jax.tar.gz && cd ${REMOTE_DIR} && \
{ python3 -m pip install -q --user uv || curl -LsSf https://astral.sh/uv/install.sh | sh; } && \
export PATH=\$HOME/.local/bin:\$PATH && \
uv python install ${PYTHON_VERSION} && uv venv --allow-existing --python ${PYTHON_VERSION} .venv && \
uv pip install -q --python .venv/bin/python -r requirements.txt 'jax[tpu]==$(jax_version)' && \
uv pip install -q --python .venv/bin/python --no-deps -r requirements-assets.txt -e ."
}

run() {
  # SIMKO_DISTRIBUTED=1: every worker calls jax.distributed.initialize() (the TPU metadata server gives
  # the coordinator, process count and id); harmless on a single-host slice.
  mkdir -p "${STATE_DIR}"
  local overrides=""
  : >"${STATE_DIR}/${TPU_NAME}.overrides"
  if (($# > 0)); then
    printf '%s\0' "$@" >"${STATE_DIR}/${TPU_NAME}.overrides"
    overrides="$(printf ' %q' "$@")"
  fi
  # Hub ids are downloaded by every worker into its own local Hub cache; HF_TOKEN (gated models such
  # as Llama-3.2) is passed on when set here. HF_HUB_OFFLINE=1 here: use only what is cached there.
  local hub_env="HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}"
  if [[ -n "${HF_TOKEN:-}" ]]; then
    hub_env+=" HF_TOKEN=$(printf '%q' "${HF_TOKEN}")"
  fi
  on_workers all "bash launch/detach.sh start ~/${RUN_DIR} -- env SIMKO_DISTRIBUTED=1 ${hub_env} \
.venv/bin/python -m simko_jax.main --config ${CONFIG} --config.out_dir=${OUT_DIR}${overrides}"
}

status() {
  gcloud_tpu describe "${TPU_NAME}" --format='value(state)'
  on_workers all "bash launch/detach.sh status ~/${RUN_DIR} ${OUT_DIR}/metrics.jsonl"
}

logs() {
  local worker=0 follow=""
  while (($# > 0)); do
    case "$1" in
      --worker)
        [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "error: --worker needs a worker number, e.g. --worker 3" >&2; exit 2; }
        worker="$2"; shift 2 ;;
      --worker=*) worker="${1#--worker=}"; shift ;;
      --follow) follow="--follow"; shift ;;
      *) echo "error: logs takes [--worker N] [--follow], not '$1'" >&2; exit 2 ;;
    esac
  done
  on_workers "${worker}" "bash launch/detach.sh logs ~/${RUN_DIR} ${follow}"
}

delete() {
  if [[ "${QUEUED:-0}" == "1" ]]; then
    gcloud_cmd queued-resources delete "${TPU_NAME}" --force --quiet
  else
    gcloud_tpu delete "${TPU_NAME}" --quiet
  fi
}

resume() {
  # READY: the VM is there (the job was stopped or crashed): start the same command again on every
  # worker. Otherwise (PREEMPTED, gone, ...): a new TPU, the code and .venv again, then the same run.
  local state overrides=()
  state="$(gcloud_tpu describe "${TPU_NAME}" --format='value(state)' 2>/dev/null || echo MISSING)"
  if [[ "${state}" == "READY" ]]; then
    on_workers all "bash launch/detach.sh resume ~/${RUN_DIR}"
    return
  fi
  echo "TPU ${TPU_NAME} is ${state:-MISSING}: recreating it, then resuming from ${OUT_DIR}"
  delete || true
  if [[ "${QUEUED:-0}" == "1" ]]; then
    queue
    wait_until_active
  else
    create
  fi
  setup
  if [[ -f "${STATE_DIR}/${TPU_NAME}.overrides" ]]; then
    mapfile -d '' overrides <"${STATE_DIR}/${TPU_NAME}.overrides"
  fi
  run "${overrides[@]}"
}

main() {
  local cmd="${1:-}"
  shift || true
  case "${cmd}" in
    create | queue | setup | status | delete | resume) "${cmd}" ;;
    run | logs) "${cmd}" "$@" ;;
    stop) on_workers all "STOP_TIMEOUT=${STOP_TIMEOUT:-900} bash launch/detach.sh stop ~/${RUN_DIR}" ;;
    ssh) gcloud_tpu ssh "${TPU_NAME}" --worker="${WORKER:-0}" ;;
    *)
      echo "usage: $0 {create|queue|setup|run|status|logs|stop|resume|ssh|delete} [--config.a.b=value ...]" >&2
      exit 2
      ;;
  esac
}

main "$@"
