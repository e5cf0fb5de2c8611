#!/usr/bin/env bash
# deploy.sh: build the worker image, push it to ACR and roll it out on AKS, from config.env.
# Run with --help for the steps; docs/deploy.md is the walkthrough.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./deploy.sh [--dry-run] [--output-dir DIR] [--ramp PERCENT]

Takes config.env (and the environment) to a running, ready worker on AKS:

  [1/10] Checking configuration      every missing or malformed variable, at once; one call of
                                     deploy/plan.py checks, derives every name and renders
  [2/10] Checking tools and access   az, kubectl, docker buildx (or BUILD_MODE=acr), az login,
                                     the subscription, the registry, the kubectl context
  [3/10] Replaying open workflows    the most recent open workflows on the task queue
                                     (DEPLOY_REPLAY_HISTORIES, 20) replayed against this checkout:
                                     a change they cannot take stops the deploy here
  [4/10] Rendering manifests         what step 1 rendered, and where (as ./generate-k8s-manifests.sh)
  [5/10] Logging in to ACR           az acr login --expose-token | docker login --password-stdin
  [6/10] Building and pushing image  docker buildx build --push (linux/amd64,linux/arm64),
                                     or az acr build; skipped when the tag is already in ACR;
                                     then the tag's digest from ACR, and the manifests
                                     rendered again to run the image by that digest
  [7/10] Creating namespace          idempotent (kubectl apply --server-side)
  [8/10] Applying manifests          kubectl apply --server-side, in dependency order
                                     then kubectl delete of what features now off left
                                     (by the app's labels; docs/deploy.md, turning a feature off)
  [9/10] Waiting for rollout         kubectl rollout status --timeout $ROLLOUT_TIMEOUT
                                     (and of the codec server with CODEC_SERVER_DEPLOY=true)
  [10/10] Routing new workflows      WORKER_VERSIONING=true: deploy/rollout.py set-current makes
                                     the new version current (older versions keep their pinned
                                     workflows); with versioning off the rolling update did it.
                                     With ROLLOUT_STEPS (such as 10:5m,50:10m): deploy/progressive.py
                                     ramps it through the steps, a gate at every step (gate
                                     workflow, failure rate against the current version), then
                                     makes it current; a failed gate removes the ramp and fails

then shows the pods and the kubectl logs command (and, with CODEC_SERVER_DEPLOY=true, where
the codec server is reached and the read-only roles its identity needs). The image tag is the git commit (with a
-dirty-<hash> suffix for uncommitted changes) unless IMAGE_TAG or APP_IMAGE is set. Every
command is printed before it runs; a failing step stops the script with its name and a hint.
With WORKER_VERSIONING=true each tag gets its own Deployment; ./patch.sh --clean-up deletes
the ones whose workflows have drained.

Options:
  --dry-run          check the configuration, replay open workflows and render the manifests
                     (into a temporary directory), print every other command without running
                     it; nothing is built, pushed, applied or written next to the scripts
  --output-dir DIR   write the manifests to DIR (default: the script's directory)
  --ramp PERCENT     with WORKER_VERSIONING=true: send only PERCENT (1-100) of new workflows to
                     the new version; ./deploy.sh again without it makes the version current
                     (not with ROLLOUT_STEPS, which ramps by itself: ROLLOUT_STEPS= --ramp P)
  -h, --help         this text

See docs/deploy.md and CONFIGURATION.md.
USAGE
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"
# shellcheck source=scripts/deploy-steps.sh
source "$REPO_DIR/scripts/deploy-steps.sh"

main() {
  parse_arguments "--dry-run --output-dir --ramp" "$@"
  trap 'finish $?' EXIT
  choose_manifest_dir
  STEP_TOTAL=10
  announce_dry_run

  step_check_configuration deploy
  step "Checking tools and access" \
    "fix the problems listed above, then run ./deploy.sh again (./deploy.sh --dry-run shows every command)." \
    preflight deploy
  step_replay_open_workflows
  step_render_manifests
  step_acr_login
  step_build_and_push
  step "Creating namespace" \
    "check that kubectl --context $(shell_word "$KUBE_CONTEXT") can create namespaces, or create $KUBERNETES_NAMESPACE as a cluster admin." \
    create_namespace
  step "Applying manifests" \
    "the API server rejected the manifest named above; fix the setting behind it and run ./deploy.sh again." \
    apply_manifests
  step_wait_for_rollout
  step_route_new_workflows
  show_pods_and_logs_command
  payload_storage_hints
  codec_server_hints
}

main "$@"
