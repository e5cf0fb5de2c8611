#!/usr/bin/env bash
# patch.sh: the quick path after a code or configuration change, for a worker that
# ./deploy.sh has deployed once. Run with --help for the steps.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./patch.sh [--config-only] [--dry-run] [--output-dir DIR]

Code change (default): rebuild, push and roll out a new image of the deployed worker.
  [1/7] Checking configuration     [2/7] Checking tools and access
  [3/7] Rendering manifests        [4/7] Logging in to ACR
  [5/7] Building and pushing image
  [6/7] Updating image             kubectl set image deployment/$APP_NAME worker=$APP_IMAGE@<digest>
  [7/7] Waiting for rollout        kubectl rollout status --timeout $ROLLOUT_TIMEOUT

--config-only: apply changed settings without building an image.
  [1/5] Checking configuration     [2/5] Checking cluster access
  [3/5] Rendering manifests
  [4/5] Applying configuration     the Secrets and the ConfigMap, then kubectl rollout restart
  [5/5] Waiting for rollout

Changes to resources, replicas, identity (AZURE_CLIENT_ID), KEDA or the namespace need
./deploy.sh, which applies every manifest.

Options:
  --config-only      apply the ConfigMap and Secrets and restart the pods; no build
  --dry-run          check and render, print every other command without running it
  --output-dir DIR   write the manifests to DIR (default: the script's directory)
  -h, --help         this text
USAGE
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"
# shellcheck source=scripts/deploy-steps.sh
source "$REPO_DIR/scripts/deploy-steps.sh"

patch_image() {
  STEP_TOTAL=7
  step_check_configuration deploy
  step "Checking tools and access" "fix the problems listed above, then run ./patch.sh again." preflight deploy
  step_render_manifests
  step_acr_login
  step_build_and_push
  step "Updating image" \
    "deployment/$APP_NAME must exist in namespace $KUBERNETES_NAMESPACE: run ./deploy.sh first." \
    set_image
  step_wait_for_rollout
}

patch_configuration() {
  STEP_TOTAL=5
  step_check_configuration config
  step "Checking cluster access" "fix the problems listed above, then run ./patch.sh --config-only again." preflight config
  step_render_manifests
  step "Applying configuration" \
    "the API server rejected the manifest named above, or deployment/$APP_NAME does not exist yet: run ./deploy.sh first." \
    apply_configuration_and_restart
  step_wait_for_rollout
}

apply_configuration_and_restart() {
  apply_configuration
  restart_rollout
}

main() {
  parse_arguments "--config-only --dry-run --output-dir" "$@"
  trap 'finish $?' EXIT
  choose_manifest_dir
  announce_dry_run
  if $CONFIG_ONLY; then
    patch_configuration
  else
    patch_image
  fi
  show_pods_and_logs_command
}

main "$@"
