#!/usr/bin/env bash
# Runs one command detached from the terminal on this machine, and manages it: the piece of
# launch/gpu_host.sh and launch/tpu_vm.sh that runs on the machine(s) that train.
#
#   launch/detach.sh start  RUN_DIR -- CMD [ARG ...]   # start CMD detached; returns at once
#   launch/detach.sh status RUN_DIR [METRICS_JSONL]    # running or not, last log line, last step
#   launch/detach.sh logs   RUN_DIR [--follow]         # the last LOG_LINES lines (default 40), or follow
#   launch/detach.sh stop   RUN_DIR                    # SIGTERM, wait until it exits; its exit status
#   launch/detach.sh resume RUN_DIR                    # start the last command again (same dir, args)
#
# Why setsid + nohup (and not a systemd-run transient unit): the job gets its own session, so it has
# no controlling terminal and gets no SIGHUP when the SSH session or the laptop goes away; nohup
# ignores SIGHUP anyway. It needs no root, no lingering user manager (`systemd-run --user` units die
# at logout unless `loginctl enable-linger`), works in containers without systemd, and is the same on
# a TPU VM and an 8-GPU host. What systemd would add (restart on crash) is the trainer's own job here:
# it resumes from its newest checkpoint when started again (`resume`).
#
# Files in RUN_DIR, per worker (WORKER_ID, default 0; one directory per run and machine):
#   worker-<i>.log   stdout + stderr of the command     worker-<i>.pid   the command's process id
#   worker-<i>.exit  its exit status, once it ended     command, cwd     what `resume` starts again
# Exit status: 0 on success; stop returns the command's own exit status (0 = saved and exited).
set -euo pipefail

STOP_TIMEOUT="${STOP_TIMEOUT:-900}"   # seconds `stop` waits (a save of a 7B run takes minutes)
WORKER_ID="${WORKER_ID:-0}"

die() {
  echo "error: $*" >&2
  exit 1
}

paths() {
  RUN_DIR="$1"
  LOG="${RUN_DIR}/worker-${WORKER_ID}.log"
  PID_FILE="${RUN_DIR}/worker-${WORKER_ID}.pid"
  EXIT_FILE="${RUN_DIR}/worker-${WORKER_ID}.exit"
}

running_pid() {
  # The command's pid if it is still alive (and not yet reaped by its wrapper), else nothing.
  local pid
  [[ -f "${PID_FILE}" ]] || return 0
  pid="$(cat "${PID_FILE}")"
  if [[ ! -f "${EXIT_FILE}" ]] && kill -0 "${pid}" 2>/dev/null; then
    echo "${pid}"
  fi
}

launch_detached() {
  # The wrapper shell (its own session, SIGHUP ignored) starts the command, writes its pid, waits
  # for it and writes its exit status. The pid is the command's own, so `stop` signals the trainer.
  rm -f "${EXIT_FILE}" "${PID_FILE}"
  # shellcheck disable=SC2016  # expanded by the wrapper shell, not here
  (cd "$(cat "${RUN_DIR}/cwd")" && exec setsid nohup bash -c \
    '"$@" & echo $! > "$0.pid"; wait $!; echo $? > "$0.exit"' "${RUN_DIR}/worker-${WORKER_ID}" \
    "${COMMAND[@]}" >>"${LOG}" 2>&1 </dev/null &)
  local tries=0
  while [[ ! -s "${PID_FILE}" ]] && ((tries < 100)); do   # it appears within milliseconds
    sleep 0.1
    tries=$((tries + 1))
  done
  [[ -s "${PID_FILE}" ]] || die "the command did not start; see ${LOG}"
  echo "started worker ${WORKER_ID} (pid $(cat "${PID_FILE}")), log ${LOG}"
}

start() {
  paths "$1"
  shift
  [[ "${1:-}" == "--" ]] && shift
  (($# > 0)) || die "start needs a command: $0 start RUN_DIR -- CMD [ARG ...]"
  mkdir -p "${RUN_DIR}"
  local pid
  pid="$(running_pid)"
  [[ -z "${pid}" ]] || die "worker ${WORKER_ID} of ${RUN_DIR} is still running (pid ${pid}): stop it first"
  printf '%s\0' "$@" >"${RUN_DIR}/command"
  pwd >"${RUN_DIR}/cwd"
  COMMAND=("$@")
  echo "=== $(date -u '+%Y-%m-%d %H:%M:%S') UTC start:$(printf ' %q' "$@")" >>"${LOG}"
  launch_detached
}

resume() {
  paths "$1"
  [[ -f "${RUN_DIR}/command" ]] || die "no run was started in ${RUN_DIR} (no ${RUN_DIR}/command): use start"
  local pid
  pid="$(running_pid)"
  [[ -z "${pid}" ]] || die "worker ${WORKER_ID} of ${RUN_DIR} is still running (pid ${pid}): nothing to resume"
  mapfile -d '' COMMAND <"${RUN_DIR}/command"
  echo "=== $(date -u '+%Y-%m-%d %H:%M:%S') UTC resume" >>"${LOG}"
  launch_detached
}

last_log_line() {
  # tqdm redraws its bar with carriage returns: the last non-empty segment is what a terminal shows.
  [[ -f "${LOG}" ]] || return 0
  tail -c 4096 "${LOG}" | tr '\r' '\n' | sed '/^[[:space:]]*$/d' | tail -n 1
}

status() {
  paths "$1"
  local metrics="${2:-}" pid state step=""
  pid="$(running_pid)"
  if [[ -n "${pid}" ]]; then
    state="running (pid ${pid})"
  elif [[ -f "${EXIT_FILE}" ]]; then
    state="exited with status $(cat "${EXIT_FILE}")"
  elif [[ -f "${PID_FILE}" ]]; then
    state="not running, no exit status (killed with SIGKILL, or the machine restarted)"
  else
    state="never started in ${RUN_DIR}"
  fi
  if [[ -n "${metrics}" && -f "${metrics}" ]]; then
    step="$(tail -n 1 "${metrics}" | sed -n 's/^{"step": *\([0-9]*\).*/\1/p')"
  fi
  echo "worker ${WORKER_ID}: ${state}"
  [[ -z "${step}" ]] || echo "worker ${WORKER_ID}: last step in ${metrics}: ${step}"
  echo "worker ${WORKER_ID}: last log line: $(last_log_line)"
}

logs() {
  paths "$1"
  [[ -f "${LOG}" ]] || die "no log ${LOG}: the run was never started on worker ${WORKER_ID}"
  if [[ "${2:-}" == "--follow" ]]; then
    exec tail -n "${LOG_LINES:-40}" -F "${LOG}"
  fi
  tail -n "${LOG_LINES:-40}" "${LOG}"
}

stop() {
  paths "$1"
  local pid waited=0
  pid="$(running_pid)"
  if [[ -z "${pid}" ]]; then
    echo "worker ${WORKER_ID}: not running"
    return 0
  fi
  kill -TERM "${pid}"
  echo "worker ${WORKER_ID}: SIGTERM sent to pid ${pid}; waiting for it to save and exit"
  while [[ ! -f "${EXIT_FILE}" ]] && kill -0 "${pid}" 2>/dev/null; do
    ((waited < STOP_TIMEOUT)) || die "worker ${WORKER_ID}: pid ${pid} still running after \
${STOP_TIMEOUT} s (a save in progress, or hung): wait longer, or 'kill -KILL ${pid}' (resume then \
restarts from the previous checkpoint)"
    sleep 1
    waited=$((waited + 1))
  done
  sleep 0.5   # the wrapper writes the exit file right after the command ends
  local code
  code="$(cat "${EXIT_FILE}" 2>/dev/null || echo unknown)"
  echo "worker ${WORKER_ID}: exited with status ${code}"
  [[ "${code}" == "0" ]]
}

main() {
  local cmd="${1:-}"
  shift || true
  (($# > 0)) || set -- ""
  case "${cmd}" in
    start | status | logs | stop | resume)
      [[ -n "$1" ]] || die "${cmd} needs RUN_DIR"
      "${cmd}" "$@"
      ;;
    *)
      echo "usage: $0 {start RUN_DIR -- CMD...|status RUN_DIR [METRICS]|logs RUN_DIR [--follow]|stop RUN_DIR|resume RUN_DIR}" >&2
      exit 2
      ;;
  esac
}

main "$@"
