#!/usr/bin/env bash
# Configuration variables are assigned by name (printf -v) from the catalogs below:
# shellcheck disable=SC2153,SC2154
# source_config.sh: load the temporal-aks configuration into a bash shell, as data.
#
#   source ./source_config.sh                  set every variable below in this shell
#   bash source_config.sh --check [TASK]       validate for TASK (render, config or deploy); list every problem
#   bash source_config.sh --show               print the resolved configuration, secrets hidden
#   bash source_config.sh --list-variables     print every variable name, one per line
#   bash source_config.sh --help
#
# Each variable comes from, in order: the process environment (exported and non-empty), then
# config.env (or $CONFIG_ENV_FILE), then its default. config.env is parsed by config.py with
# python-dotenv, exactly as the worker reads it, and never executed as shell code. Variables this
# file sets are not exported, so sourcing again after editing config.env picks up the change.
# Nothing here prints a secret. CONFIGURATION.md describes every variable.

if [ -z "${BASH_VERSION:-}" ]; then
  echo "source_config.sh: needs bash (this shell is not bash); run: bash, then source ./source_config.sh" >&2
  # shellcheck disable=SC2317  # exit is reached when the file is run rather than sourced
  return 1 2>/dev/null || exit 1
fi

# Deploy-side variables: NAME|DEFAULT. An empty default is either optional or derived (see sc_derive).
sc_deploy_catalog() {
  cat <<'CATALOG'
AZURE_SUBSCRIPTION_ID|
RESOURCE_GROUP|
ACR_NAME|
ACR_USERNAME|
ACR_PASSWORD|
ACR_EMAIL|
AKS_CLUSTER_NAME|
KUBE_CONTEXT|
KUBERNETES_NAMESPACE|temporal-workers
APP_NAME|temporal-worker
IMAGE_TAG|
APP_IMAGE|
REPLICAS|2
CPU_REQUEST|200m
MEMORY_REQUEST|256Mi
CPU_LIMIT|500m
MEMORY_LIMIT|512Mi
AZURE_CLIENT_ID|
BUILD_MODE|buildx
BUILD_PLATFORMS|
KEDA_ENABLED|false
KEDA_MIN_REPLICAS|1
KEDA_MAX_REPLICAS|10
KEDA_TARGET_QUEUE_SIZE|5
ROLLOUT_TIMEOUT|5m
CATALOG
}

SC_DEPLOY_SECRETS="ACR_PASSWORD"
SC_BUILDX_PLATFORMS="linux/amd64,linux/arm64"
SC_ACR_BUILD_PLATFORM="linux/amd64"
SC_END_OF_FILE_VALUES="--source-config-end--"

sc_dir() {
  local source=${BASH_SOURCE[0]}
  case $source in
    */*) source=${source%/*} ;;
    *) source=. ;;
  esac
  (cd "$source" && pwd)
}

sc_fail() {
  printf 'source_config.sh: %s\n' "$1" >&2
  return 1
}

sc_warn() {
  printf 'source_config.sh: warning: %s\n' "$1" >&2
}

# The project's Python: .venv (made by ./start.sh), else $PYTHON, else python3.
sc_find_python() {
  if [ -x "$SC_DIR/.venv/bin/python" ]; then
    SC_PYTHON="$SC_DIR/.venv/bin/python"
  elif [ -n "${PYTHON:-}" ]; then
    SC_PYTHON=$PYTHON
  else
    SC_PYTHON=python3
  fi
  if ! command -v "$SC_PYTHON" >/dev/null 2>&1; then
    sc_fail "no Python found ($SC_PYTHON); run ./start.sh once, or set PYTHON to a Python 3.11 with: pip install -r requirements.txt"
    return 1
  fi
}

# Ask config.py for the app variables, one "plain|secret NAME=DEFAULT" line each; also refuse a
# config.env holding NUL bytes, which could not travel through the NUL-separated file-values protocol.
sc_app_catalog() {
  "$SC_PYTHON" -c '
import sys
sys.path.insert(0, sys.argv[1])
try:
    import dotenv, temporalio  # noqa: F401  (the project requirements)
    import config
except ImportError as error:
    print(f"source_config.sh: {sys.executable} cannot import the project requirements ({error})", file=sys.stderr)
    sys.exit(3)
try:
    with open(sys.argv[2], "rb") as file:
        has_nul = b"\0" in file.read()
except FileNotFoundError:
    has_nul = False
except OSError as error:
    print(f"source_config.sh: {sys.argv[2]}: cannot be read ({error}); fix the file or its permissions", file=sys.stderr)
    sys.exit(4)
if has_nul:
    print(f"source_config.sh: {sys.argv[2]}: contains a NUL byte; remove it (values are text)", file=sys.stderr)
    sys.exit(4)
for name, default in config.DEFAULTS.items():
    kind = "secret" if name in config.SECRET_VARIABLES else "plain"
    print(f"{kind} {name}={default}")
' "$SC_DIR" "$SC_CONFIG_FILE"
}

# Fill SC_APP_VARIABLES, SC_DEPLOY_VARIABLES, SC_SECRET_VARIABLES and the _sc_default_NAME values.
sc_load_catalogs() {
  local record kind name default status=0 output
  SC_APP_VARIABLES="" SC_DEPLOY_VARIABLES="" SC_SECRET_VARIABLES=$SC_DEPLOY_SECRETS
  output=$(sc_app_catalog) || status=$?
  if [ "$status" -ne 0 ]; then
    [ "$status" -eq 3 ] && sc_fail "run ./start.sh once (it creates .venv), or: pip install -r requirements.txt (or set PYTHON)"
    return 1
  fi
  while IFS= read -r record; do
    [ -n "$record" ] || continue
    kind=${record%% *}
    record=${record#* }
    name=${record%%=*}
    default=${record#*=}
    SC_APP_VARIABLES="$SC_APP_VARIABLES $name"
    [ "$kind" = secret ] && SC_SECRET_VARIABLES="$SC_SECRET_VARIABLES $name"
    printf -v "_sc_default_$name" '%s' "$default"
  done <<<"$output"
  while IFS='|' read -r name default; do
    SC_DEPLOY_VARIABLES="$SC_DEPLOY_VARIABLES $name"
    printf -v "_sc_default_$name" '%s' "$default"
  done < <(sc_deploy_catalog)
}

sc_in_list() {
  case " $2 " in
    *" $1 "*) return 0 ;;
    *) return 1 ;;
  esac
}

sc_is_secret() {
  sc_in_list "$1" "$SC_SECRET_VARIABLES"
}

# Keep exported, non-empty variables (the environment wins); forget everything else this file set.
sc_reset_variables() {
  local exported name
  exported=$(compgen -e)
  exported=" ${exported//$'\n'/ } "
  for name in $SC_APP_VARIABLES $SC_DEPLOY_VARIABLES; do
    if sc_in_list "$name" "$exported" && [ -n "${!name}" ]; then
      continue
    fi
    unset "$name"
  done
}

# Take config.env's values (parsed by config.py) for variables the environment did not set.
sc_read_config_file() {
  local record name value complete=false
  while IFS= read -r -d '' record; do
    if [ "$record" = "$SC_END_OF_FILE_VALUES" ]; then
      complete=true
      continue
    fi
    name=${record%%=*}
    value=${record#*=}
    if ! sc_in_list "$name" "$SC_APP_VARIABLES $SC_DEPLOY_VARIABLES"; then
      sc_warn "$SC_CONFIG_FILE: unknown variable '$name' is ignored (typo? see config.env.example)"
      continue
    fi
    if [ -z "${!name+set}" ] && [ -n "$value" ]; then
      printf -v "$name" '%s' "$value"
    fi
  done < <("$SC_PYTHON" "$SC_DIR/config.py" file-values "$SC_CONFIG_FILE" && printf '%s\0' "$SC_END_OF_FILE_VALUES")
  $complete || sc_fail "could not read $SC_CONFIG_FILE (see the error above)"
}

sc_apply_defaults() {
  local name default_name
  for name in $SC_APP_VARIABLES $SC_DEPLOY_VARIABLES; do
    default_name="_sc_default_$name"
    [ -n "${!name+set}" ] || printf -v "$name" '%s' "${!default_name}"
  done
}

sc_lowercase() {
  printf '%s' "$1" | tr '[:upper:]' '[:lower:]'
}

sc_acr_login_server() {
  printf '%s.azurecr.io' "$(sc_lowercase "$ACR_NAME")"
}

# The image tag for the working tree: the commit, plus -dirty-<hash of the changes> when the
# tree differs from it (untracked files included, ignored files such as config.env excluded).
sc_git_image_tag() {
  local commit changes
  commit=$(git -C "$SC_DIR" rev-parse --short=12 HEAD 2>/dev/null) || return 0
  changes=$(git -C "$SC_DIR" status --porcelain --untracked-files=all -- . 2>/dev/null) || return 0
  if [ -z "$changes" ]; then
    printf '%s' "$commit"
    return 0
  fi
  changes=$(sc_working_tree_hash)
  printf '%s-dirty-%s' "$commit" "${changes:0:10}"
}

sc_working_tree_hash() {
  {
    git -C "$SC_DIR" diff HEAD --binary -- .
    git -C "$SC_DIR" ls-files --others --exclude-standard -z -- . |
      while IFS= read -r -d '' path; do
        printf '%s\0' "$path"
        git -C "$SC_DIR" hash-object -- "$path"
      done
  } | git hash-object --stdin
}

# Values computed from others when not given.
sc_derive() {
  [ -n "$KUBE_CONTEXT" ] || KUBE_CONTEXT=$AKS_CLUSTER_NAME
  if [ -z "$BUILD_PLATFORMS" ]; then
    if [ "$BUILD_MODE" = acr ]; then BUILD_PLATFORMS=$SC_ACR_BUILD_PLATFORM; else BUILD_PLATFORMS=$SC_BUILDX_PLATFORMS; fi
  fi
  if [ -z "$IMAGE_TAG" ]; then
    case $APP_IMAGE in
      *:*) case ${APP_IMAGE##*:} in */*) ;; *) IMAGE_TAG=${APP_IMAGE##*:} ;; esac ;; # not a registry port
    esac
    [ -n "$IMAGE_TAG" ] || [ -n "$APP_IMAGE" ] || IMAGE_TAG=$(sc_git_image_tag)
  fi
  if [ -z "$APP_IMAGE" ] && [ -n "$ACR_NAME" ] && [ -n "$IMAGE_TAG" ]; then
    APP_IMAGE="$(sc_acr_login_server)/$APP_NAME:$IMAGE_TAG"
  fi
}

sc_load() {
  SC_DIR=$(sc_dir) || return 1
  SC_CONFIG_FILE=${CONFIG_ENV_FILE:-$SC_DIR/config.env}
  sc_find_python || return 1
  sc_load_catalogs || return 1
  sc_reset_variables
  sc_read_config_file || return 1
  sc_apply_defaults
  sc_derive
}

# ---------------------------------------------------------------- validation

sc_problem() {
  SC_PROBLEMS="${SC_PROBLEMS}  $1"$'\n'
}

# How a value may appear in a message: secrets never do, and one with control characters is escaped
# (%q), so that every problem stays on one line and no escape sequence reaches the terminal.
sc_shown() {
  if sc_is_secret "$1"; then
    printf '<hidden>'
  elif sc_matches "${!1}" '^[[:print:]]*$'; then
    printf "'%s'" "${!1}"
  else
    printf '%q' "${!1}"
  fi
}

sc_bad() {
  sc_problem "$1=$(sc_shown "$1"): $2"
}

sc_require() {
  local name=$1 why=$2
  [ -n "${!name}" ] || sc_problem "$name: not set; $why"
}

sc_matches() {
  [[ $1 =~ $2 ]]
}

SC_RFC1123_LABEL='^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
SC_GUID='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
SC_IMAGE_TAG='^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$'
SC_IMAGE='^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)+:[A-Za-z0-9_][A-Za-z0-9_.-]*$'
SC_CPU='^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$'
SC_MEMORY='^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$'
SC_DURATION='^([0-9]+(s|m|h))+$'
SC_PLATFORM='[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?'
SC_ACR_NAME='^[A-Za-z0-9]{5,50}$'
SC_WHOLE_NUMBER='^(0|[1-9][0-9]{0,5})$'

sc_check_k8s_name() {
  local name=$1 value=${!1}
  if [ -z "$value" ]; then
    sc_problem "$name: not set; give a Kubernetes name such as temporal-worker"
  elif ! sc_matches "$value" "$SC_RFC1123_LABEL" || [ "${#value}" -gt 63 ]; then
    sc_bad "$name" "must be a Kubernetes name (RFC 1123 label): lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
  fi
}

sc_check_integer() {
  local name=$1 minimum=$2 value=${!1}
  if ! sc_matches "$value" "$SC_WHOLE_NUMBER" || [ "$value" -lt "$minimum" ]; then
    sc_bad "$name" "must be a whole number, at least $minimum"
  fi
}

sc_check_boolean() {
  case $(sc_lowercase "${!1}") in
    true | false | 1 | 0) ;;
    *) sc_bad "$1" "must be true or false" ;;
  esac
}

sc_is_true() {
  case $(sc_lowercase "${!1}") in
    true | 1) return 0 ;;
    *) return 1 ;;
  esac
}

sc_check_cpu() {
  sc_matches "${!1}" "$SC_CPU" && return 0
  sc_bad "$1" "must be a CPU quantity such as 200m (millicores) or 0.5 (cores)"
  return 1
}

sc_check_memory() {
  case ${!1} in
    *[0-9]m)
      sc_bad "$1" "'m' means thousandths of a byte; did you mean ${!1%m}Mi (mebibytes)?"
      return 1
      ;;
  esac
  sc_matches "${!1}" "$SC_MEMORY" && return 0
  sc_bad "$1" "must be a memory quantity such as 256Mi or 1Gi"
  return 1
}

sc_check_request_within_limit() {
  local request=$1 limit=$2
  "$SC_PYTHON" "$SC_DIR/scripts/manifest_helpers.py" quantity-le "${!request}" "${!limit}" ||
    sc_problem "$request=${!request} is more than $limit=${!limit}; a request must not exceed its limit"
}

sc_check_resources() {
  local cpu_ok=true memory_ok=true
  sc_check_cpu CPU_REQUEST || cpu_ok=false
  sc_check_cpu CPU_LIMIT || cpu_ok=false
  sc_check_memory MEMORY_REQUEST || memory_ok=false
  sc_check_memory MEMORY_LIMIT || memory_ok=false
  ! $cpu_ok || sc_check_request_within_limit CPU_REQUEST CPU_LIMIT
  ! $memory_ok || sc_check_request_within_limit MEMORY_REQUEST MEMORY_LIMIT
}

sc_check_image() {
  if [ -z "$APP_IMAGE" ]; then
    [ -n "$ACR_NAME" ] || sc_problem "ACR_NAME: not set; it names the image (or set APP_IMAGE)"
    [ -n "$IMAGE_TAG" ] || sc_problem "IMAGE_TAG: not set and $SC_DIR is not a git checkout with a commit; set IMAGE_TAG"
  fi
  if [ -n "$ACR_NAME" ] && ! sc_matches "$ACR_NAME" "$SC_ACR_NAME"; then
    sc_bad ACR_NAME "must be the registry name: 5 to 50 letters and digits (not the .azurecr.io address)"
  fi
  if [ -n "$IMAGE_TAG" ] && ! sc_matches "$IMAGE_TAG" "$SC_IMAGE_TAG"; then
    sc_bad IMAGE_TAG "must be letters, digits, '.', '_' or '-', starting and ending with a letter or digit, at most 63 characters"
  fi
  [ -n "$APP_IMAGE" ] || return 0
  if ! sc_matches "$APP_IMAGE" "$SC_IMAGE"; then
    sc_bad APP_IMAGE "must be REGISTRY/REPOSITORY:TAG in lowercase, for example myacr.azurecr.io/temporal-worker:1a2b3c4d"
  elif [ "${APP_IMAGE##*:}" = latest ]; then
    sc_bad APP_IMAGE "the tag 'latest' is mutable, so a rollout could run other code than you tested; use a fixed tag (unset IMAGE_TAG to tag with the git commit)"
  elif [ "${APP_IMAGE##*:}" != "$IMAGE_TAG" ]; then
    sc_problem "APP_IMAGE='$APP_IMAGE' and IMAGE_TAG='$IMAGE_TAG' disagree; set only one of them"
  fi
}

sc_check_keda() {
  sc_check_boolean KEDA_ENABLED
  sc_is_true KEDA_ENABLED || return 0
  sc_check_integer KEDA_MIN_REPLICAS 0
  sc_check_integer KEDA_MAX_REPLICAS 1
  sc_check_integer KEDA_TARGET_QUEUE_SIZE 1
  if sc_matches "$KEDA_MIN_REPLICAS" "$SC_WHOLE_NUMBER" && sc_matches "$KEDA_MAX_REPLICAS" "$SC_WHOLE_NUMBER" &&
    [ "$KEDA_MIN_REPLICAS" -gt "$KEDA_MAX_REPLICAS" ]; then
    sc_problem "KEDA_MIN_REPLICAS=$KEDA_MIN_REPLICAS is more than KEDA_MAX_REPLICAS=$KEDA_MAX_REPLICAS"
  fi
  case $(sc_lowercase "$TEMPORAL_TLS") in
    true | 1)
      if [ -z "$TEMPORAL_API_KEY" ] && [ -z "$TEMPORAL_TLS_CLIENT_CERT_PATH" ]; then
        sc_problem "KEDA_ENABLED=true with TEMPORAL_TLS=true but no TEMPORAL_API_KEY or client certificate: KEDA's temporal scaler would connect without TLS; use an API key or mTLS, or set KEDA_ENABLED=false"
      fi
      ;;
  esac
}

# What the pod can use: a health file under the writable /tmp, an address that is not this laptop.
sc_check_pod_settings() {
  case $WORKER_HEALTH_FILE in
    /tmp/?*) ;;
    *) sc_bad WORKER_HEALTH_FILE "must be under /tmp/, the only writable directory in the pod" ;;
  esac
  case $TEMPORAL_ADDRESS in
    localhost:* | 127.* | "[::1]":*)
      sc_warn "TEMPORAL_ADDRESS=$TEMPORAL_ADDRESS points at the pod itself in the cluster; use the Temporal Cloud or in-cluster address"
      ;;
  esac
  [ -z "$KEYVAULT_CA_FILE" ] ||
    sc_warn "KEYVAULT_CA_FILE is a test-only setting and is not deployed; the pod trusts the system CAs"
  case $(sc_lowercase "$KEYVAULT_VERIFY_CHALLENGE_RESOURCE") in
    true | 1) ;;
    *) sc_warn "KEYVAULT_VERIFY_CHALLENGE_RESOURCE=$KEYVAULT_VERIFY_CHALLENGE_RESOURCE is a test-only setting and is not deployed; the pod verifies the challenge" ;;
  esac
}

# Values bound for the ConfigMap must be text kubectl can write as YAML (Secrets are base64: anything goes).
sc_check_config_map_text() {
  local name problems problem
  problems=$(
    for name in $SC_APP_VARIABLES; do
      sc_is_secret "$name" || printf '%s=%s\0' "$name" "${!name}"
    done | "$SC_PYTHON" "$SC_DIR/scripts/manifest_helpers.py" yaml-unsafe
  )
  while IFS= read -r problem; do
    [ -z "$problem" ] || sc_problem "$problem"
  done <<<"$problems"
}

# The image pull Secret is JSON, which holds only UTF-8 text (the values go through a pipe, never an argv).
sc_check_pull_secret_text() {
  local problem
  while IFS= read -r problem; do
    [ -z "$problem" ] || sc_problem "$problem"
  done < <(printf '%s=%s\0' ACR_USERNAME "$ACR_USERNAME" ACR_PASSWORD "$ACR_PASSWORD" ACR_EMAIL "$ACR_EMAIL" |
    "$SC_PYTHON" "$SC_DIR/scripts/manifest_helpers.py" not-text)
}

sc_check_render() {
  sc_check_config_map_text
  sc_check_pull_secret_text
  sc_check_k8s_name APP_NAME
  sc_check_k8s_name KUBERNETES_NAMESPACE
  sc_check_image
  sc_check_integer REPLICAS 1
  sc_check_resources
  [ -z "$AZURE_CLIENT_ID" ] || sc_matches "$AZURE_CLIENT_ID" "$SC_GUID" ||
    sc_bad AZURE_CLIENT_ID "must be the managed identity's client ID, a GUID such as 00000000-0000-0000-0000-000000000000"
  if { [ -n "$ACR_USERNAME" ] && [ -z "$ACR_PASSWORD" ]; } || { [ -z "$ACR_USERNAME" ] && [ -n "$ACR_PASSWORD" ]; }; then
    sc_problem "ACR_USERNAME and ACR_PASSWORD go together: set both for an image pull secret, or neither to pull with az aks update --attach-acr"
  fi
  case $ACR_USERNAME in
    *:* | *[[:cntrl:]]*) sc_bad ACR_USERNAME "must not contain ':' or control characters" ;;
  esac
  sc_check_keda
  sc_check_pod_settings
}

sc_check_kube_context() {
  [ -n "$KUBE_CONTEXT" ] ||
    sc_problem "KUBE_CONTEXT: not set; set AKS_CLUSTER_NAME (the context az aks get-credentials creates) or KUBE_CONTEXT"
  case $KUBE_CONTEXT in
    *[[:cntrl:]]*) sc_bad KUBE_CONTEXT "must not contain control characters" ;;
  esac
}

sc_check_deploy() {
  sc_require AZURE_SUBSCRIPTION_ID "give the subscription to deploy into (az account list --output table)"
  [ -z "$AZURE_SUBSCRIPTION_ID" ] || sc_matches "$AZURE_SUBSCRIPTION_ID" "$SC_GUID" ||
    sc_bad AZURE_SUBSCRIPTION_ID "must be a subscription ID (a GUID); az account list --output table shows yours"
  if [ -z "$ACR_NAME" ]; then
    [ -z "$APP_IMAGE" ] || sc_problem "ACR_NAME: not set; deploy.sh pushes the image to this registry"
  elif [ -n "$APP_IMAGE" ] && [ "${APP_IMAGE#"$(sc_acr_login_server)/"}" = "$APP_IMAGE" ]; then
    sc_problem "APP_IMAGE='$APP_IMAGE' is not in the registry ACR_NAME=$ACR_NAME ($(sc_acr_login_server)/...), where deploy.sh pushes"
  fi
  case $BUILD_MODE in
    buildx) sc_matches "$BUILD_PLATFORMS" "^$SC_PLATFORM(,$SC_PLATFORM)*$" ||
      sc_bad BUILD_PLATFORMS "must be comma-separated platforms such as linux/amd64,linux/arm64" ;;
    acr) sc_matches "$BUILD_PLATFORMS" "^$SC_PLATFORM$" ||
      sc_bad BUILD_PLATFORMS "az acr build builds one platform per call; give one, such as linux/amd64 (or use BUILD_MODE=buildx)" ;;
    *) sc_bad BUILD_MODE "must be buildx (docker buildx on this machine) or acr (az acr build in Azure)" ;;
  esac
  sc_matches "$ROLLOUT_TIMEOUT" "$SC_DURATION" ||
    sc_bad ROLLOUT_TIMEOUT "must be a duration with a unit, such as 300s, 5m or 1h"
}

# Print every problem for TASK (render: manifests; config: render + cluster access; deploy: all).
sc_validate() {
  local task=${1:-deploy} app_problems="" status=0
  SC_PROBLEMS=""
  case $task in
    render) sc_check_render ;;
    config) sc_check_render; sc_check_kube_context ;;
    deploy) sc_check_render; sc_check_kube_context; sc_check_deploy ;;
    *) sc_fail "unknown task '$task' (render, config or deploy)"; return 2 ;;
  esac
  app_problems=$("$SC_PYTHON" "$SC_DIR/config.py" check 2>&1 >/dev/null) || status=$?
  if [ -z "$SC_PROBLEMS" ] && [ "$status" -eq 0 ]; then
    return 0
  fi
  {
    if [ -n "$SC_PROBLEMS" ]; then
      printf 'Configuration problems (%s, from %s and the environment):\n' "$task" "$SC_CONFIG_FILE"
      printf '%s' "$SC_PROBLEMS"
    fi
    [ "$status" -eq 0 ] || printf '%s\n' "$app_problems"
    printf 'CONFIGURATION.md explains each variable.\n'
  } >&2
  return 1
}

# ---------------------------------------------------------------- command line

sc_list_variables() {
  local name
  for name in $SC_APP_VARIABLES $SC_DEPLOY_VARIABLES; do
    printf '%s\n' "$name"
  done
}

sc_show() {
  local name
  printf '# from the environment, then %s, then defaults\n' "$SC_CONFIG_FILE"
  for name in $SC_APP_VARIABLES $SC_DEPLOY_VARIABLES; do
    if sc_is_secret "$name" && [ -n "${!name}" ]; then
      printf '%s=<set, hidden>\n' "$name"
    elif sc_matches "${!name}" '^[A-Za-z0-9_./:,@+=-]*$'; then
      printf '%s=%s\n' "$name" "${!name}"
    else
      printf '%s=%q\n' "$name" "${!name}"
    fi
  done
}

sc_usage() {
  cat <<'USAGE'
Usage: source ./source_config.sh
       bash source_config.sh --check [render|config|deploy] | --show | --list-variables | --help

Loads the temporal-aks configuration into this bash shell: each variable comes from the
environment (exported, non-empty), else config.env (or $CONFIG_ENV_FILE), else its default.
config.env is read as KEY=VALUE data by config.py (python-dotenv), never run as shell code.

  --check TASK       validate for TASK and print every problem (exit 1 if any):
                     render = manifests only, config = render + kubectl context,
                     deploy = everything ./deploy.sh needs (the default)
  --show             print every variable's value; secrets are shown as <set, hidden>
  --list-variables   print every variable name this project reads, one per line
  --help             this text

Python comes from .venv/bin/python (./start.sh creates it), else $PYTHON, else python3.
See CONFIGURATION.md.
USAGE
}

sc_main() {
  set -euo pipefail
  case ${1:-} in
    -h | --help) sc_usage; return 0 ;;
  esac
  sc_load
  case ${1:-} in
    --list-variables) sc_list_variables ;;
    --show) sc_show ;;
    --check) sc_validate "${2:-deploy}" && echo "Configuration OK for ${2:-deploy}" ;;
    *) sc_usage >&2; return 2 ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  sc_main "$@"
else
  sc_load
fi
