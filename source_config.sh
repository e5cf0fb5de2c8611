#!/usr/bin/env bash
# source_config.sh: load the temporal-aks configuration into a bash shell, as data.
#
#   source ./source_config.sh                  set every non-secret variable in this shell
#   source ./source_config.sh --check TASK     the same, once the configuration passes the checks for TASK,
#                                              with the plan (PLAN_* values, deploy/plan.py says which)
#   bash source_config.sh --check [TASK]       check for TASK (local, render, config or deploy, the default)
#   bash source_config.sh --show               print every variable's value, secrets hidden
#   bash source_config.sh --list-variables     print every variable name, one per line
#   bash source_config.sh --help
#
# Python does the work (deploy/plan.py, with the catalog in config.py and deploy/deploy_config.py): it reads
# config.env as data (python-dotenv, never run as shell code), applies the precedence (the environment, then config.env,
# then the defaults), derives what was not given (the image tag from git, the kubectl context) and
# checks. This file only loads the values it prints. Secrets are not loaded: the Python tools read them
# themselves. Variables this file sets are not exported, so sourcing again after editing config.env
# picks up the change. The first run creates .venv with the runtime requirements (requirements.txt).

if [ -z "${BASH_VERSION:-}" ]; then
  echo "source_config.sh: needs bash (this shell is not bash); run: bash, then source ./source_config.sh" >&2
  # shellcheck disable=SC2317  # exit is reached when the file is run rather than sourced
  return 1 2>/dev/null || exit 1
fi

sc_usage() {
  cat <<'USAGE'
Usage: source ./source_config.sh [--check TASK]
       bash source_config.sh --check [TASK] | --show | --list-variables | --help

Loads the temporal-aks configuration into this bash shell: each variable comes from the
environment (exported, non-empty), else config.env (or $CONFIG_ENV_FILE), else its default.
config.env is read as KEY=VALUE data by deploy/plan.py (python-dotenv), never run as shell code.
Secrets are never loaded into the shell, nor printed. With --check, the values derived from them
are loaded too (PLAN_KUBERNETES_DEPLOYMENT, PLAN_ACR_IMAGE, ...: see deploy/plan.py). The deploy
scripts add --ramp PERCENT and --render DIR, which deploy/plan.py checks and renders in the same call.

  --check TASK       check for TASK and print every problem (exit status 2 if any):
                     local = the app's settings (what ./start.sh checks),
                     render = + the manifests, config = + the kubectl context,
                     deploy = everything ./deploy.sh needs (the default)
  --show             print every variable's value; secrets are shown as <set, hidden>
  --list-variables   print every variable name this project reads, one per line
  --help             this text

Python is .venv/bin/python, which the first run creates with requirements.txt.
See CONFIGURATION.md.
USAGE
}

# The project's Python: .venv, created or updated from requirements.txt when needed (one line says so).
sc_python() {
  SC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  # shellcheck source=ensure_venv.sh
  source "$SC_DIR/ensure_venv.sh"
  ensure_venv "$SC_DIR/.venv" "$SC_DIR/requirements.txt" || return
  SC_PYTHON="$SC_DIR/.venv/bin/python"
}

# What deploy/plan.py prints (NUL-separated NAME=VALUE pairs), then a last record with its exit status
# (written so that it is printed under set -e too).
sc_values_then_status() {
  if "$SC_PYTHON" "$SC_DIR/deploy/plan.py" values "$@"; then
    printf -- '--exit-status=0\0'
  else
    printf -- '--exit-status=%s\0' "$?"
  fi
}

# Set each NAME=VALUE that deploy/plan.py prints (NUL-separated), once it has exited 0; with TASK, it
# prints the values (and the plan) only when the configuration passes the checks for TASK (else the
# problems, status 2). Further arguments (--ramp, --render) go to deploy/plan.py.
sc_load() {
  local record name status=1 pairs=()
  sc_python || return
  while IFS= read -r -d '' record; do
    case $record in
      --exit-status=*) status=${record#*=} ;;
      *) pairs+=("$record") ;;
    esac
  done < <(sc_values_then_status "$@")
  [ "$status" -eq 0 ] || return "$status"
  for record in "${pairs[@]}"; do
    name=${record%%=*}
    # An exported variable left empty is unset for Python; un-export it so the value set here stays local.
    [ -n "${!name:-}" ] || export -n "${name?}" 2>/dev/null || true
    printf -v "$name" '%s' "${record#*=}"
  done
}

sc_main() {
  set -euo pipefail
  case ${1:-} in
    -h | --help) sc_usage ;;
    --check) sc_python && "$SC_PYTHON" "$SC_DIR/deploy/plan.py" check "${2:-deploy}" ;;
    --show) sc_python && "$SC_PYTHON" "$SC_DIR/deploy/plan.py" show ;;
    --list-variables) sc_python && "$SC_PYTHON" "$SC_DIR/deploy/plan.py" list-variables ;;
    *)
      sc_usage >&2
      return 2
      ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  sc_main "$@"
elif [ "${1:-}" = --check ]; then
  sc_load "${2:-deploy}" "${@:3}"
else
  sc_load
fi
