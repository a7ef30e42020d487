#!/usr/bin/env bash
# Cloud TPU VM (single host or pod slice) lifecycle for simko_jax: create, copy + install, run, tear down.
#
#   launch/tpu_vm.sh create     # gcloud compute tpus tpu-vm create (spot if SPOT=1)
#   launch/tpu_vm.sh setup      # copy this checkout to every worker, make .venv with jax[tpu]
#   launch/tpu_vm.sh run [--config.a.b=v ...]   # the trainer on every worker at once (foreground)
#   launch/tpu_vm.sh status | ssh | delete
#   launch/tpu_vm.sh resume [...]   # after a preemption: delete, create, setup, run (same OUT_DIR)
#
# Settings (environment): TPU_NAME, ZONE, ACCELERATOR_TYPE (e.g. v5p-128, v5litepod-64, v4-32),
# RUNTIME_VERSION, PROJECT (optional), SPOT=1 for spot capacity, CONFIG (a configs/*.py file),
# OUT_DIR (a directory every worker sees at the same path, e.g. a gcsfuse / Filestore mount: Orbax
# writes one checkpoint from all hosts there, and the trainer resumes from its newest step),
# REMOTE_DIR (checkout location on the workers), REMOTE_PYTHON (default python3.11 on the workers),
# HF_TOKEN (for gated Hub models), HF_HUB_OFFLINE=1 (workers use only their Hub cache). See launch/README.md.
set -euo pipefail

TPU_NAME="${TPU_NAME:-simko-tpu}"
ZONE="${ZONE:-us-east5-a}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v5p-128}"
RUNTIME_VERSION="${RUNTIME_VERSION:-v2-alpha-tpuv5}"
CONFIG="${CONFIG:-configs/qwen25_math7b_tpu_v5p_128.py}"
OUT_DIR="${OUT_DIR:-/mnt/simko/runs/$(basename "${CONFIG}" .py)}"
REMOTE_DIR="${REMOTE_DIR:-simko_jax}"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"

gcloud_tpu() {
  local args=(compute tpus tpu-vm "$@" --zone="${ZONE}")
  if [[ -n "${PROJECT:-}" ]]; then
    args+=(--project="${PROJECT}")
  fi
  gcloud "${args[@]}"
}

on_all_workers() {
  gcloud_tpu ssh "${TPU_NAME}" --worker=all --command="$1"
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

setup() {
  local tarball
  tarball="$(mktemp -d)/simko_jax.tar.gz"
  tar -C "${REPO_ROOT}" --exclude=.venv --exclude=runs --exclude=.git -czf "${tarball}" .
  gcloud_tpu scp "${tarball}" "${TPU_NAME}:simko_jax.tar.gz" --worker=all
  on_all_workers "mkdir -p ${REMOTE_DIR} && tar -C ${REMOTE_DIR} -xzf simko_jax.tar.gz && \
cd ${REMOTE_DIR} && PYTHON=${REMOTE_PYTHON:-python3.11} bash scripts/ensure_env.sh runtime && \
.venv/bin/pip install -q 'jax[tpu]==$(jax_version)'"
}

run() {
  # SIMKO_DISTRIBUTED=1: every worker calls jax.distributed.initialize() (the TPU metadata server gives
  # the coordinator, process count and id); harmless on a single-host slice.
  local overrides=""
  if (($# > 0)); then
    overrides="$(printf ' %q' "$@")"
  fi
  # Hub ids are downloaded by every worker into its own local Hub cache; HF_TOKEN (gated models such
  # as Llama-3.2) is passed on when set here. HF_HUB_OFFLINE=1 here: use only what is cached there.
  local hub_env="HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}"
  if [[ -n "${HF_TOKEN:-}" ]]; then
    hub_env+=" HF_TOKEN=$(printf '%q' "${HF_TOKEN}")"
  fi
  on_all_workers "cd ${REMOTE_DIR} && mkdir -p ${OUT_DIR} && SIMKO_DISTRIBUTED=1 ${hub_env} \
.venv/bin/python -m simko_jax.main --config ${CONFIG} --config.out_dir=${OUT_DIR}${overrides}"
}

main() {
  local cmd="${1:-}"
  shift || true
  case "${cmd}" in
    create) create ;;
    setup) setup ;;
    run) run "$@" ;;
    status) gcloud_tpu describe "${TPU_NAME}" ;;
    ssh) gcloud_tpu ssh "${TPU_NAME}" --worker="${WORKER:-0}" ;;
    delete) gcloud_tpu delete "${TPU_NAME}" --quiet ;;
    resume)
      gcloud_tpu delete "${TPU_NAME}" --quiet || true
      create
      setup
      run "$@"
      ;;
    *)
      echo "usage: $0 {create|setup|run|status|ssh|delete|resume} [--config.a.b=value ...]" >&2
      exit 2
      ;;
  esac
}

main "$@"
