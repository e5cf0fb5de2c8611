# shellcheck shell=bash
# Shared by generate-k8s-manifests.sh, deploy.sh and patch.sh: Kubernetes names derived from the
# configuration, the manifest files in the order they are applied, and message helpers.
# Source it after source_config.sh.
# shellcheck disable=SC2154,SC2034  # config variables come from source_config.sh; the names are used by the scripts that source this file

# Manifests in dependency order: identity and secrets before what uses them, the Deployment before
# what targets it. Files for features that are off are not written (and stale ones are removed).
MANIFEST_FILES="service-account.yaml acr-secret.yaml temporal-api-key-secret.yaml temporal-tls-secret.yaml config-map.yaml deployment.yaml pod-disruption-budget.yaml keda-scaledobject.yaml"
SECRET_MANIFEST_FILES="acr-secret.yaml temporal-api-key-secret.yaml temporal-tls-secret.yaml"

CONTAINER_NAME=worker
TLS_MOUNT_DIR=/etc/temporal-tls

# Names of the Kubernetes objects, all derived from APP_NAME.
set_object_names() {
  CONFIG_MAP_NAME="$APP_NAME-config"
  API_KEY_SECRET_NAME="$APP_NAME-temporal-api-key"
  TLS_SECRET_NAME="$APP_NAME-temporal-tls"
  PULL_SECRET_NAME="$APP_NAME-acr-pull"
  TRIGGER_AUTH_NAME="$APP_NAME-temporal"
  POD_SELECTOR="app.kubernetes.io/instance=$APP_NAME"
}

script_name() {
  printf '%s' "${0##*/}"
}

die() {
  printf '%s: %s\n' "$(script_name)" "$1" >&2
  exit "${2:-1}"
}

# The Python helper for what bash cannot do safely (see scripts/manifest_helpers.py).
manifest_helper() {
  "$SC_PYTHON" "$SC_DIR/scripts/manifest_helpers.py" "$@"
}
