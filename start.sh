#!/usr/bin/env bash
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./start.sh [all|worker|client|codec-server]

  all           (default) the worker, the client loop and, when payload
                encryption or payload storage is on, the codec server for the Web UI
  worker        the worker only
  client        the client loop only
  codec-server  the codec server only

On a laptop: creates .venv from requirements-local.txt when it is missing or
out of date, checks config.env, and when TEMPORAL_ADDRESS is a local address
with nothing listening, starts the embedded Temporal dev server (history kept
in .temporal/dev-server.db) and prints the Web UI URL. When
PAYLOAD_STORAGE_CONNECTION_STRING points at 127.0.0.1 or localhost over http with
nothing listening, it starts Azurite, the Azure Storage emulator (installed with npm
into .azurite/node the first time; needs Node.js 18+), keeps its blobs in
.azurite/data and creates the container. Ctrl-C or SIGTERM stops everything it
started: what still runs WORKER_SHUTDOWN_TIMEOUT_SECONDS + 11 s later is killed
with a WARNING, and a second Ctrl-C or SIGTERM kills it at once.

In the container image (IN_CONTAINER=true, set by the Dockerfile) it replaces
itself with the one Python process asked for, so that process is PID 1 and
receives Kubernetes' SIGTERM.
USAGE
}

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV_PYTHON="$REPO_DIR/.venv/bin/python"
DEV_SERVER_STATE_DIR="$REPO_DIR/.temporal"
DEV_SERVER_START_TIMEOUT_SECONDS=60
STARTED_PIDS=()
DEV_SERVER_PID=""
AZURITE_DIR="$REPO_DIR/.azurite"
AZURITE_START_TIMEOUT_SECONDS=60
AZURITE_PID=""
CREATING_CONTAINER_PID=""
# What stopping gives the processes started here before they are killed: the worker's graceful shutdown
# (WORKER_SHUTDOWN_TIMEOUT_SECONDS, read from the configuration) plus this margin; a second Ctrl-C or
# SIGTERM kills them at once.
STOP_MARGIN_SECONDS=10
PAYLOAD_STORAGE=off # what payload_storage.py status says: off, on, or "emulator 127.0.0.1:PORT"

entry_point_for() {
  case "$1" in
    worker) echo worker.py ;;
    client) echo client.py ;;
    codec-server) echo codec_server.py ;;
  esac
}

run_in_container() {
  local mode=$1
  if [[ "$mode" == all ]]; then
    echo "ERROR: in a container run one process: ./start.sh worker, client or codec-server" >&2
    exit 2
  fi
  exec python "$REPO_DIR/$(entry_point_for "$mode")"
}

is_listening() {
  local port=$1
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

codec_server_url() {
  local host=$CODEC_SERVER_HOST scheme=http
  case "$host" in
    0.0.0.0 | "::" | "[::]") host=127.0.0.1 ;; # listening everywhere: the browser reaches it on loopback
  esac
  if [[ -n "$CODEC_SERVER_TLS_CERT_FILE" ]]; then
    scheme=https # the codec server serves TLS itself
  fi
  echo "$scheme://$host:$CODEC_SERVER_PORT"
}

# The Web UI of the dev server started here calls the codec server from the browser:
# add its origins to the allowed ones for the codec server this script starts.
allow_dev_ui_to_call_codec_server() {
  local ui_port=$1
  export CODEC_SERVER_CORS_ORIGINS="$CODEC_SERVER_CORS_ORIGINS,http://localhost:$ui_port,http://127.0.0.1:$ui_port"
}

encryption_enabled() {
  [[ -n "$KEYVAULT_URL" && -n "$KEYVAULT_SECRET_NAME" ]]
}

# The codec server shows decrypted payloads, and the payloads behind payload storage references.
codec_server_wanted() {
  encryption_enabled || [[ "$PAYLOAD_STORAGE" != off ]]
}

# Azurite for a connection string that points at a local address where nothing listens; then the container.
start_azurite_if_needed() {
  local endpoint port azurite_blob
  [[ "$PAYLOAD_STORAGE" == "emulator "* ]] || return 0
  endpoint=${PAYLOAD_STORAGE#emulator }
  port=${endpoint##*:}
  if is_listening "$port"; then
    echo "Using the Azure Storage emulator already listening at $endpoint"
  else
    # shellcheck source=scripts/azurite.sh
    source "$REPO_DIR/scripts/azurite.sh"
    azurite_blob=$(ensure_azurite "$AZURITE_DIR/node") || exit 1
    mkdir -p "$AZURITE_DIR/data"
    echo "Starting Azurite, the Azure Storage emulator, on $endpoint (blobs in .azurite/data, log: .azurite/azurite.log) ..."
    "$azurite_blob" --blobHost 127.0.0.1 --blobPort "$port" --location "$AZURITE_DIR/data" \
      --disableTelemetry --skipApiVersionCheck --silent >"$AZURITE_DIR/azurite.log" 2>&1 &
    AZURITE_PID=$!
    wait_until_listening Azurite "$port" "$AZURITE_PID" "$AZURITE_DIR/azurite.log" "$AZURITE_START_TIMEOUT_SECONDS"
  fi
  # In the background, waited for: a stop signal ends the `wait` at once (a foreground command would hold the
  # trap until it returned, for as long as a storage that accepts and never answers keeps it).
  "$VENV_PYTHON" "$REPO_DIR/payload_storage.py" create-container &
  CREATING_CONTAINER_PID=$!
  if ! wait "$CREATING_CONTAINER_PID"; then
    exit 1
  fi
  CREATING_CONTAINER_PID=""
}

start_dev_server_if_needed() {
  local address=$TEMPORAL_ADDRESS port ui_port
  port=${address##*:}
  # Whether the address is this machine: config.is_local_address decided it with the rest of the configuration.
  if [[ "$PLAN_TEMPORAL_ADDRESS_LOCAL" != true ]]; then
    echo "Using the Temporal server at $address"
    return 0
  fi
  if is_listening "$port"; then
    echo "Using the Temporal server already listening at $address"
    return 0
  fi
  ui_port=${TEMPORAL_DEV_SERVER_UI_PORT:-$((port + 1000))}
  local arguments=(server start-dev --ip 127.0.0.1 --port "$port" --ui-port "$ui_port"
    --db-filename "$DEV_SERVER_STATE_DIR/dev-server.db" --log-level warn)
  [[ "$TEMPORAL_NAMESPACE" == default ]] || arguments+=(--namespace "$TEMPORAL_NAMESPACE")
  if codec_server_wanted; then
    arguments+=(--ui-codec-endpoint "$(codec_server_url)")
    allow_dev_ui_to_call_codec_server "$ui_port"
  fi
  mkdir -p "$DEV_SERVER_STATE_DIR"
  echo "Starting the Temporal dev server on $address (log: .temporal/dev-server.log) ..."
  "$REPO_DIR/.venv/bin/temporal" "${arguments[@]}" >"$DEV_SERVER_STATE_DIR/dev-server.log" 2>&1 &
  DEV_SERVER_PID=$!
  wait_until_listening "the Temporal dev server" "$port" "$DEV_SERVER_PID" "$DEV_SERVER_STATE_DIR/dev-server.log" \
    "$DEV_SERVER_START_TIMEOUT_SECONDS"
  echo "Temporal Web UI: http://localhost:$ui_port"
}

# Wait until PORT listens, or stop with one line naming WHAT and its LOG when process PID exits or
# TIMEOUT seconds pass.
wait_until_listening() {
  local what=$1 port=$2 pid=$3 log=$4 timeout=$5 waited=0 shown_log
  shown_log=${log#"$REPO_DIR/"}
  until is_listening "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "ERROR: $what exited; see $shown_log" >&2
      tail -n 5 "$log" >&2 || true
      exit 1
    fi
    if ((waited >= timeout * 10)); then
      echo "ERROR: $what did not listen on port $port within ${timeout}s; see $shown_log" >&2
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

start_process() {
  "$VENV_PYTHON" "$REPO_DIR/$(entry_point_for "$1")" &
  STARTED_PIDS+=($!)
}

# Kill at once what is still running: a second stop signal while stopping.
kill_everything() {
  trap - TERM INT
  echo "WARNING: a second stop signal: killing what is still running" >&2
  kill_remaining
  exit 0
}

kill_remaining() {
  local pid pids=("${STARTED_PIDS[@]}" "$CREATING_CONTAINER_PID" "$DEV_SERVER_PID" "$AZURITE_PID")
  for pid in "${pids[@]}"; do
    [[ -z "$pid" ]] || kill -KILL "$pid" 2>/dev/null || true
  done
}

# SIGTERM to PIDS, then wait for them at most BOUND seconds; what is left then is killed, with a WARNING.
stop_within() {
  local bound=$1 pid waited=0 running
  shift
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  while :; do
    running=()
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then running+=("$pid"); fi
    done
    ((${#running[@]} > 0)) || break
    if ((waited >= bound * 10)); then
      echo "WARNING: process ${running[*]} still running ${bound}s after SIGTERM: killed" >&2
      kill -KILL "${running[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  for pid in "$@"; do
    wait "$pid" 2>/dev/null || true
  done
}

stop_everything() {
  trap - EXIT
  trap kill_everything TERM INT
  local bound
  bound=$(stop_bound_seconds)
  if [[ -n "$CREATING_CONTAINER_PID" ]]; then
    stop_within "$STOP_MARGIN_SECONDS" "$CREATING_CONTAINER_PID"
  fi
  if ((${#STARTED_PIDS[@]} > 0)); then
    stop_within "$bound" "${STARTED_PIDS[@]}"
  fi
  if [[ -n "$DEV_SERVER_PID" ]]; then
    echo "Stopping the Temporal dev server ..."
    stop_within "$STOP_MARGIN_SECONDS" "$DEV_SERVER_PID"
  fi
  if [[ -n "$AZURITE_PID" ]]; then
    echo "Stopping Azurite ..."
    stop_within "$STOP_MARGIN_SECONDS" "$AZURITE_PID"
  fi
}

# The worker's graceful shutdown, in whole seconds rounded up, plus the margin.
stop_bound_seconds() {
  local shutdown=${WORKER_SHUTDOWN_TIMEOUT_SECONDS:-30}
  shutdown=${shutdown%%.*}
  echo $((${shutdown:-0} + 1 + STOP_MARGIN_SECONDS))
}

# A shell without job control starts a background command (`./start.sh &` in a script, a supervisor's
# wrapper) with SIGINT ignored, and bash can neither trap nor reset a signal ignored on entry: a lone SIGINT to
# this process (what a supervisor sends) was then dropped. Seen as `trap -p INT` printing an empty action; then
# this script runs itself again with SIGINT back to its default (only a program can do that: Python here).
restore_sigint() {
  local python
  [[ "$(trap -p INT)" == "trap -- '' SIGINT" ]] || return 0
  python=$(command -v python3) || return 0 # no Python: ensure_venv says what to install
  exec "$python" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$REPO_DIR/start.sh" "$@"
}

processes_for() {
  case "$1" in
    all)
      echo worker client
      if codec_server_wanted; then echo codec-server; fi
      ;;
    *) echo "$1" ;;
  esac
}

run_on_laptop() {
  local mode=$1 process exit_status=0
  # shellcheck source=ensure_venv.sh
  source "$REPO_DIR/ensure_venv.sh"
  ensure_venv "$REPO_DIR/.venv" "$REPO_DIR/requirements-local.txt"
  # The app's settings, checked (every problem listed at once, exit status 2) and loaded into this shell.
  # shellcheck source=source_config.sh
  source "$REPO_DIR/source_config.sh" --check local
  # The connection string is a secret this shell never holds: Python says whether storage is on, and where.
  PAYLOAD_STORAGE=$("$VENV_PYTHON" "$REPO_DIR/payload_storage.py" status)
  trap stop_everything EXIT
  trap 'exit 0' TERM INT
  start_azurite_if_needed
  if [[ "$mode" != codec-server ]]; then
    start_dev_server_if_needed
  fi
  for process in $(processes_for "$mode"); do
    start_process "$process"
  done
  wait -n "${STARTED_PIDS[@]}" || exit_status=$?
  echo "A process exited (status $exit_status); stopping the others ..." >&2
  exit "$exit_status"
}

main() {
  local mode=${1:-all}
  case "$mode" in
    -h | --help)
      usage
      return 0
      ;;
    all | worker | client | codec-server) ;;
    *)
      echo "ERROR: unknown mode '$mode'" >&2
      usage >&2
      exit 2
      ;;
  esac
  if [[ "${IN_CONTAINER:-}" == true ]]; then
    run_in_container "$mode"
  fi
  restore_sigint "$@"
  run_on_laptop "$mode"
}

main "$@"
