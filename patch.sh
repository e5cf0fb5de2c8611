#!/usr/bin/env bash
# patch.sh: the quick path after a code or configuration change, for a worker that
# ./deploy.sh has deployed once. Run with --help for the steps.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./patch.sh [--config-only | --clean-up | --rollback] [--dry-run] [--output-dir DIR] [--ramp PERCENT]

Code change (default): rebuild, push and roll out a new image of the deployed worker.
  [1/9] Checking configuration     [2/9] Checking tools and access
  [3/9] Replaying open workflows   (as ./deploy.sh: a change running workflows cannot take stops here)
  [4/9] Rendering manifests        [5/9] Logging in to ACR
  [6/9] Building and pushing image
  [7/9] Updating image             kubectl set image deployment/$APP_NAME worker=$APP_IMAGE@<digest>
                                   (and the codec server's with CODEC_SERVER_DEPLOY=true)
                                   (WORKER_VERSIONING=true: "Starting the new version", which applies
                                   the new tag's own Deployment next to the older ones)
  [8/9] Waiting for rollout        kubectl rollout status --timeout $ROLLOUT_TIMEOUT
  [9/9] Routing new workflows      WORKER_VERSIONING=true: make the new version current (with
                                   ROLLOUT_STEPS: through the steps and their gates, as ./deploy.sh)

--config-only: apply changed settings without building an image.
  [1/5] Checking configuration     [2/5] Checking cluster access
  [3/5] Rendering manifests
  [4/5] Applying configuration     the Secrets and the ConfigMap, kubectl delete of what features
                                   now off left, then kubectl rollout restart
                                   (with versioning: of every version's Deployment)
  [5/5] Waiting for rollout

--clean-up: with WORKER_VERSIONING=true, delete the versions nobody needs any more.
  [1/3] Checking configuration     [2/3] Checking cluster access
  [3/3] Deleting drained versions  deploy/rollout.py drained lists every version with its drainage;
                                   the Deployment (and KEDA ScaledObject) of each version that is
                                   drained and neither current nor ramping is deleted, and Temporal
                                   is asked to forget it. A version with pinned workflows still
                                   running is never deleted.

--rollback: with WORKER_VERSIONING=true, send new workflows back to the version that was current
before, at once; nothing is built, applied or deleted.
  [1/2] Checking configuration
  [2/2] Rolling back               deploy/rollout.py rollback: the version Temporal last had as
                                   current before the current one becomes current again (while a
                                   version ramps, the ramp is removed instead). Workflows pinned to
                                   the version left behind stay on it, and are listed. A dry run
                                   asks Temporal and says what it would do.

Changes to resources, replicas, identity (AZURE_CLIENT_ID), KEDA, the namespace or the
codec server's objects (CODEC_SERVER_DEPLOY=true the first time, its Ingress, replicas,
resources) need ./deploy.sh, which applies every manifest. --config-only restarts the
deployed codec server with its new ConfigMap and Secret too.

Options:
  --config-only      apply the ConfigMap and Secrets and restart the pods; no build
  --clean-up         delete drained versions (WORKER_VERSIONING=true)
  --rollback         make the previous current version current again (WORKER_VERSIONING=true)
  --dry-run          check, replay and render, print every other command without running it
  --output-dir DIR   write the manifests to DIR (default: the script's directory)
  --ramp PERCENT     with WORKER_VERSIONING=true: send only PERCENT (1-100) of new workflows to
                     the new version
  -h, --help         this text
USAGE
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"
# shellcheck source=scripts/deploy-steps.sh
source "$REPO_DIR/scripts/deploy-steps.sh"

patch_image() {
  STEP_TOTAL=9
  step_check_configuration deploy
  step "Checking tools and access" "fix the problems listed above, then run ./patch.sh again." preflight deploy
  step_replay_open_workflows
  step_render_manifests
  step_acr_login
  step_build_and_push
  if [ "$WORKER_VERSIONING" = true ]; then
    step "Starting the new version" \
      "the API server rejected the manifest named above; fix the setting behind it and run ./patch.sh again." \
      start_version
  else
    step "Updating image" \
      "deployment/$APP_NAME must exist in namespace $KUBERNETES_NAMESPACE: run ./deploy.sh first." \
      set_image
  fi
  step_wait_for_rollout
  step_route_new_workflows
}

patch_configuration() {
  STEP_TOTAL=5
  step_check_configuration config
  step "Checking cluster access" "fix the problems listed above, then run ./patch.sh --config-only again." preflight config
  step_render_manifests
  step "Applying configuration" \
    "the API server rejected the manifest named above, or deployment/$APP_NAME does not exist yet: run ./deploy.sh first." \
    apply_configuration_and_restart
  if [ "$WORKER_VERSIONING" = true ]; then
    step "Waiting for rollout" "$(rollout_hint)" wait_for_every_version
  else
    step_wait_for_rollout
  fi
}

patch_clean_up() {
  STEP_TOTAL=3
  step_check_configuration config no
  step "Checking cluster access" "fix the problems listed above, then run ./patch.sh --clean-up again." preflight config
  step "Deleting drained versions" \
    "Temporal's answer above says what failed; nothing after it was deleted. If Temporal could not be reached from here, set DEPLOY_TEMPORAL_ADDRESS." \
    delete_drained_versions
}

patch_rollback() {
  STEP_TOTAL=2
  step_check_configuration config no
  step "Rolling back" \
    "Temporal's answer above says what could not be done; the routing is as it was. If Temporal could not be reached from here, set DEPLOY_TEMPORAL_ADDRESS." \
    roll_back
}

# deploy/rollout.py decides from Temporal's versions which version goes back to current; a dry run runs its own
# read-only --dry-run (what it would do) and prints the command a real run runs.
roll_back() {
  [ "$WORKER_VERSIONING" = true ] ||
    die "--rollback needs WORKER_VERSIONING=true: without versioning there is no earlier version to route to; deploy the previous commit again (git checkout, then ./patch.sh)." 2
  ! $DRY_RUN || run_local "$SC_PYTHON" "$REPO_DIR/deploy/rollout.py" rollback --dry-run
  run "$SC_PYTHON" "$REPO_DIR/deploy/rollout.py" rollback
}

apply_configuration_and_restart() {
  apply_configuration
  restart_rollout
}

main() {
  parse_arguments "--config-only --clean-up --rollback --dry-run --output-dir --ramp" "$@"
  ! { $CONFIG_ONLY && $CLEAN_UP; } || die "--config-only and --clean-up are two different runs; give one" 2
  ! { $ROLLBACK && { $CONFIG_ONLY || $CLEAN_UP; }; } || die "--rollback is a run of its own; give it without --config-only or --clean-up" 2
  { [ -z "$RAMP" ] || ! { $CONFIG_ONLY || $CLEAN_UP || $ROLLBACK; }; } || die "--ramp goes with a code change, not --config-only, --clean-up or --rollback" 2
  trap 'finish $?' EXIT
  choose_manifest_dir
  announce_dry_run
  if $ROLLBACK; then
    patch_rollback
    return 0
  elif $CLEAN_UP; then
    patch_clean_up
    return 0
  elif $CONFIG_ONLY; then
    patch_configuration
  else
    patch_image
  fi
  show_pods_and_logs_command
}

main "$@"
