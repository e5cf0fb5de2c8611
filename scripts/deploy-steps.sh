# shellcheck shell=bash
# The steps deploy.sh and patch.sh are made of. Source it after common.sh.
#
# Every step is announced as "[N/TOTAL] Name ..." and runs its commands through run/check (common.sh):
# printed, then run, or in a dry run only printed. A failing command ends the script (set -e); the
# EXIT trap then names the step and prints its hint. No command line carries a secret: the ACR token
# travels through a pipe, Secrets through files kubectl reads.
#
# The first step reads the plan: one call of deploy/plan.py checks the configuration, derives every value
# the steps need (the PLAN_* variables: object names, the image as ACR names it, the files to apply) and
# renders the manifests. The steps branch on those values and derive nothing themselves; what talks to
# Temporal (deploy/rollout.py) runs as a process of its own.

STEP_NUMBER=0
STEP_TOTAL=0
STEP_NAME=""
STEP_HINT=""
MANIFEST_DIR=""
TEMPORARY_MANIFEST_DIR=""
ACR_TOKEN_USERNAME=00000000-0000-0000-0000-000000000000
# The image the pods run: APP_IMAGE pinned by the digest the registry has for it (build_and_push sets it).
DEPLOY_IMAGE=""
# What a dry run shows for the digest, which only a real push or lookup knows.
DIGEST_PLACEHOLDER="<digest>"
# Every manifest is applied server-side under one field manager: the API server keeps field ownership, and
# no last-applied-configuration annotation (which client-side apply fills with a Secret's data) is written.
# --force-conflicts: the rendered manifests are the truth, as they were with client-side apply; it takes back
# fields another manager changed (kubectl set image by patch.sh, kubectl scale, client-side apply before).
APPLY=(apply --server-side --field-manager=temporal-aks --force-conflicts)
LAST_APPLIED_ANNOTATION=kubectl.kubernetes.io/last-applied-configuration

step() {
  STEP_NUMBER=$((STEP_NUMBER + 1))
  STEP_NAME=$1
  STEP_HINT=$2
  shift 2
  printf '\n[%s/%s] %s ...\n' "$STEP_NUMBER" "$STEP_TOTAL" "$STEP_NAME"
  "$@"
}

# The steps deploy.sh and patch.sh share, each with the hint printed when it fails.
step_check_configuration() {
  step "Checking configuration" \
    "fix the variables listed above in config.env or the environment; CONFIGURATION.md explains each." \
    check_configuration "$@"
}

step_render_manifests() {
  step "Rendering manifests" \
    "the error above names the manifest or setting; ./generate-k8s-manifests.sh reproduces it." \
    render_manifests
}

step_acr_login() {
  step "Logging in to ACR" \
    "run az login; check ACR_NAME and that your account has the AcrPush role on the registry." \
    acr_login
}

step_build_and_push() {
  step "Building and pushing image" "$(build_hint)" build_and_push
}

step_wait_for_rollout() {
  step "Waiting for rollout" "$(rollout_hint)" wait_for_rollout
}

step_replay_open_workflows() {
  step "Replaying open workflows" "$(replay_hint 1)" replay_open_workflows
}

step_route_new_workflows() {
  step "Routing new workflows" \
    "the new version's pods are running, but Temporal did not make it current (the message above says why); once fixed, ./deploy.sh again (nothing is rebuilt) finishes the switch." \
    route_new_workflows
}

# EXIT trap: remove a dry run's manifests; on failure, name the step and give its hint.
finish() {
  local status=$1
  [ -z "$TEMPORARY_MANIFEST_DIR" ] || rm -rf "$TEMPORARY_MANIFEST_DIR"
  if [ "$status" -ne 0 ] && [ -n "$STEP_NAME" ]; then
    printf '\n%s: step %s/%s "%s" failed (exit status %s).\n' "$(script_name)" "$STEP_NUMBER" "$STEP_TOTAL" "$STEP_NAME" "$status" >&2
    printf 'Hint: %s\n' "$(visible_text "$STEP_HINT")" >&2
  fi
}

announce_dry_run() {
  ! $DRY_RUN || echo "Dry run: checks, read-only look-ups (such as replaying open workflows) and rendering run; every command that changes something is printed, not run."
}

kube() {
  run kubectl --context "$KUBE_CONTEXT" --namespace "$KUBERNETES_NAMESPACE" "$@"
}

# ---------------------------------------------------------------- 1. configuration

# Read the plan: the configuration checked for TASK (deploy or config; every problem listed at once), with
# --ramp, and the manifests rendered into MANIFEST_DIR unless RENDER is "no" (--clean-up renders nothing).
check_configuration() {
  local task=$1 render=${2:-yes} arguments=()
  [ -z "$RAMP" ] || arguments+=(--ramp "$RAMP")
  [ "$render" = no ] || arguments+=(--render "$MANIFEST_DIR")
  # shellcheck source=../source_config.sh
  source "$REPO_DIR/source_config.sh" --check "$task" "${arguments[@]}"
  printf '  Configuration: %s\n' "$(shell_word "${CONFIG_ENV_FILE:-$REPO_DIR/config.env}")"
  printf '  Image:         %s\n' "$APP_IMAGE"
  printf '  Cluster:       kubectl context %s, namespace %s\n' "$(shell_word "$KUBE_CONTEXT")" "$KUBERNETES_NAMESPACE"
  [ "$task" != deploy ] || printf '  Azure:         subscription %s, registry %s (%s)\n' "$AZURE_SUBSCRIPTION_ID" "$ACR_NAME" "$BUILD_MODE"
  [ "$task" = deploy ] && [ "$WORKER_VERSIONING" = true ] || return 0
  printf '  Versioning:    deployment/%s runs build id %s of Worker Deployment %s\n' \
    "$PLAN_KUBERNETES_DEPLOYMENT" "$IMAGE_TAG" "$PLAN_WORKER_DEPLOYMENT"
  [ -z "$PLAN_RAMP" ] || printf '  Ramp:          %s%% of new workflows go to it; the current version keeps the rest\n' "$PLAN_RAMP"
  [ -z "$PLAN_ROLLOUT_STEPS" ] || printf '  Steps:         %s, then current; a gate at every step, rolled back if it fails\n' "$PLAN_ROLLOUT_STEPS"
}

# ---------------------------------------------------------------- 2. preflight

PREFLIGHT_PROBLEMS=""

preflight_problem() {
  PREFLIGHT_PROBLEMS="${PREFLIGHT_PROBLEMS}  - $1"$'\n'
}

# A tool on PATH; a dry run assumes every tool is there.
has_command() {
  $DRY_RUN || command -v "$1" >/dev/null 2>&1
}

check_tools() {
  local mode=$1
  has_command kubectl || preflight_problem "kubectl not found: install it with az aks install-cli (https://kubernetes.io/docs/tasks/tools/)"
  [ "$mode" = deploy ] || return 0
  has_command az || preflight_problem "az (Azure CLI) not found: install it from https://aka.ms/azure-cli"
  [ "$BUILD_MODE" = buildx ] || return 0
  if ! has_command docker; then
    preflight_problem "docker not found: install Docker with buildx, or set BUILD_MODE=acr to build in Azure with az acr build"
  elif ! check "" docker buildx version; then
    preflight_problem "docker buildx not available: install the buildx plugin, or set BUILD_MODE=acr"
  elif ! check "" docker info --format '{{.ServerVersion}}'; then
    preflight_problem "the Docker daemon is not reachable: start Docker, or set BUILD_MODE=acr"
  fi
}

check_azure() {
  has_command az || return 0
  if ! check "" az account show --subscription "$AZURE_SUBSCRIPTION_ID" --query id --output tsv; then
    preflight_problem "Azure: not logged in, or no access to subscription $AZURE_SUBSCRIPTION_ID: run az login, then check AZURE_SUBSCRIPTION_ID (az account list --output table)"
  elif ! check "" az acr show --name "$ACR_NAME" --subscription "$AZURE_SUBSCRIPTION_ID" --query loginServer --output tsv; then
    preflight_problem "Azure: registry ACR_NAME=$(shell_word "$ACR_NAME") not found in subscription $AZURE_SUBSCRIPTION_ID, or no access: check ACR_NAME (az acr list --output table)"
  fi
}

# aks_command SUBCOMMAND [ARGUMENT...]: `az aks SUBCOMMAND` for this cluster, for a person to copy: every value
# quoted, a <placeholder> where RESOURCE_GROUP or AKS_CLUSTER_NAME is not set.
aks_command() {
  local subcommand=$1
  shift
  printf 'az aks %s --resource-group %s --name %s' "$subcommand" \
    "$(shell_word_or "${RESOURCE_GROUP:-}" "<resource group>")" "$(shell_word_or "${AKS_CLUSTER_NAME:-}" "<cluster>")"
  [ $# -eq 0 ] || printf ' %s' "$(command_line "$@")"
}

check_cluster() {
  local mode=$1 context
  context=$(shell_word "$KUBE_CONTEXT")
  has_command kubectl || return 0
  if ! check "$KUBE_CONTEXT" kubectl config get-contexts --output name; then
    preflight_problem "kubectl: no context named $context: run $(aks_command get-credentials) --subscription $(shell_word_or "${AZURE_SUBSCRIPTION_ID:-}" "<subscription>"), or set KUBE_CONTEXT"
  elif ! check yes kubectl --context "$KUBE_CONTEXT" auth can-i create deployments.apps --namespace "$KUBERNETES_NAMESPACE"; then
    preflight_problem "kubectl: context $context cannot create Deployments in namespace $KUBERNETES_NAMESPACE, or the cluster is unreachable: check $(command_line kubectl --context "$KUBE_CONTEXT" get nodes)"
  elif [ "$mode" = deploy ] && [ "$KEDA_ENABLED" = true ] &&
    ! check "" kubectl --context "$KUBE_CONTEXT" get crd scaledobjects.keda.sh triggerauthentications.keda.sh --output name; then
    preflight_problem "KEDA_ENABLED=true but KEDA is not installed in the cluster: $(aks_command update --enable-keda) (the temporal scaler needs KEDA 2.17+), or set KEDA_ENABLED=false"
  elif [ "$mode" = deploy ] && [ "$METRICS_SCRAPE" = podmonitor ] &&
    ! check "" kubectl --context "$KUBE_CONTEXT" get crd podmonitors.azmonitoring.coreos.com --output name; then
    preflight_problem "METRICS_SCRAPE=podmonitor but the cluster has no azmonitoring.coreos.com PodMonitor: turn on Azure Monitor managed Prometheus ($(aks_command update --enable-azure-monitor-metrics)), or set METRICS_SCRAPE=annotations or none"
  elif [ "$mode" = deploy ] && [ "$METRICS_SCRAPE" = prometheus-operator ] &&
    ! check "" kubectl --context "$KUBE_CONTEXT" get crd podmonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com --output name; then
    preflight_problem "METRICS_SCRAPE=prometheus-operator but the cluster has no monitoring.coreos.com PodMonitor and PrometheusRule: install prometheus-operator (kube-prometheus-stack), or set METRICS_SCRAPE=annotations or none"
  fi
}

# Tools, Azure login and cluster access, every problem reported at once. MODE: deploy or config.
preflight() {
  local mode=$1
  PREFLIGHT_PROBLEMS=""
  check_tools "$mode"
  [ "$mode" != deploy ] || check_azure
  check_cluster "$mode"
  if [ -n "$PREFLIGHT_PROBLEMS" ]; then
    printf 'Preflight found these problems:\n%s' "$(visible_text "$PREFLIGHT_PROBLEMS")"$'\n' >&2
    return 1
  fi
  $DRY_RUN || echo "  Tools, Azure login and cluster access are fine."
}

# ---------------------------------------------------------------- 3. manifests

# A dry run renders into a private directory that is removed at exit, unless --output-dir says where.
choose_manifest_dir() {
  if [ -n "$OUTPUT_DIR" ]; then
    MANIFEST_DIR=$OUTPUT_DIR
  elif $DRY_RUN; then
    TEMPORARY_MANIFEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/temporal-aks-dry-run.XXXXXX")
    MANIFEST_DIR=$TEMPORARY_MANIFEST_DIR
  else
    MANIFEST_DIR=$REPO_DIR
  fi
}

# The plan rendered the manifests while it checked the configuration (step 1), in a dry run too: that is how a
# dry run validates them. This step says what was written; ./generate-k8s-manifests.sh renders them alone.
render_manifests() {
  printf '%s\n' "$PLAN_RENDERED"
  [ -z "$TEMPORARY_MANIFEST_DIR" ] || echo "  (dry run: these files are removed at exit; --output-dir DIR keeps them)"
}

# ---------------------------------------------------------------- 4 and 5. image

# APP_IMAGE names a digest (the plan parsed it): the pods run that image and nothing is built.
image_has_digest() {
  [ "$PLAN_IMAGE_PINNED" = true ]
}

# docker login reads the short-lived ACR token on stdin; it is never an argument or a file.
acr_login() {
  if [ "$BUILD_MODE" = acr ]; then
    echo "  Not needed: az acr build pushes with your az login."
    return 0
  fi
  run az acr login --name "$ACR_NAME" --subscription "$AZURE_SUBSCRIPTION_ID" --expose-token --output tsv --query accessToken \
    "|" docker login "$PLAN_IMAGE_REGISTRY" --username "$ACR_TOKEN_USERNAME" --password-stdin
}

# Tags are never overwritten: an image already in ACR under this tag was built from the same commit.
image_in_registry() {
  found az acr repository show --name "$ACR_NAME" --subscription "$AZURE_SUBSCRIPTION_ID" --image "$PLAN_ACR_IMAGE" --output none
}

build_and_push() {
  if image_has_digest; then
    check "" az acr repository show --name "$ACR_NAME" --subscription "$AZURE_SUBSCRIPTION_ID" --image "$PLAN_ACR_IMAGE" --output none ||
      { echo "  $APP_IMAGE is not in ACR: push it, or set APP_IMAGE to an image that is." >&2 && return 1; }
    echo "  APP_IMAGE names a digest: the pods run that image; nothing is built."
    DEPLOY_IMAGE=$APP_IMAGE
    return 0
  fi
  if image_in_registry; then
    echo "  $APP_IMAGE is already in ACR; not rebuilding (set IMAGE_TAG to build under a new tag)."
  elif [ "$BUILD_MODE" = acr ]; then
    run az acr build --registry "$ACR_NAME" --subscription "$AZURE_SUBSCRIPTION_ID" --image "$PLAN_ACR_IMAGE" \
      --platform "$BUILD_PLATFORMS" --file "$REPO_DIR/Dockerfile" "$REPO_DIR"
  else
    run docker buildx build --platform "$BUILD_PLATFORMS" --tag "$APP_IMAGE" --push --file "$REPO_DIR/Dockerfile" "$REPO_DIR"
  fi
  pin_image_digest
}

# The pods run the image by the digest the registry now has for the tag (for a multi-platform build, its
# index): what runs is exactly what was pushed or found, even if the tag is pushed again later. The
# manifests are rendered again with it.
pin_image_digest() {
  local digest=""
  capture digest az acr repository show --name "$ACR_NAME" --subscription "$AZURE_SUBSCRIPTION_ID" \
    --image "$PLAN_ACR_IMAGE" --query digest --output tsv
  if $DRY_RUN; then
    DEPLOY_IMAGE="$APP_IMAGE@$DIGEST_PLACEHOLDER"
    echo "  (dry run: a real run renders the manifests again with the image's digest, $DEPLOY_IMAGE)"
    return 0
  fi
  if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "  ACR reported no digest for $APP_IMAGE (got $(shell_word "$digest")); check that the push succeeded." >&2
    return 1
  fi
  DEPLOY_IMAGE="$APP_IMAGE@$digest"
  run_local env "APP_IMAGE=$DEPLOY_IMAGE" "$REPO_DIR/generate-k8s-manifests.sh" --output-dir "$MANIFEST_DIR"
}

build_hint() {
  if image_has_digest; then
    echo "APP_IMAGE names a digest, so nothing is built: push that image to $(shell_word "$ACR_NAME") first, or set APP_IMAGE to REGISTRY/REPOSITORY:TAG (or leave it empty) to build."
  elif [ "$BUILD_MODE" = acr ]; then
    echo "the az acr build log above shows the failing Dockerfile step; check that you have the AcrPush role on $(shell_word "$ACR_NAME")."
  else
    echo "a multi-platform build needs a buildx builder that can emulate other CPUs: docker buildx create --use --name temporal-aks; or set BUILD_PLATFORMS=linux/amd64, or BUILD_MODE=acr."
  fi
}

# ---------------------------------------------------------------- the replay check and versions

# Read-only, so it runs in a dry run too: deploy/rollout.py replays the most recent open workflows on the task queue
# against this checkout and says whether the deploy may go on (DEPLOY_REPLAY_HISTORIES=0 turns it off).
# The gate's exit status says what stopped it (deploy/rollout.py, GATE_EXIT_STATUSES): the hint leads with that
# cause, and the step fails with status 1 whatever it was.
replay_open_workflows() {
  local status=0
  run_local "$SC_PYTHON" "$REPO_DIR/deploy/rollout.py" gate || status=$?
  [ "$status" -ne 0 ] || return 0
  STEP_HINT=$(replay_hint "$status")
  return 1
}

# replay_hint STATUS: the hint for the gate's exit status.
replay_hint() {
  local skip=" DEPLOY_REPLAY_HISTORIES=0 skips this check."
  case $1 in
    1) printf '%s' "the open workflows named above would fail their next task on this code: set WORKER_VERSIONING=true (they finish on the version they started on) or guard the change with workflow.patched() (docs/deploy.md)." ;;
    3) printf '%s' "Temporal could not be reached from this machine (the ERROR above says why), so no workflow was replayed: set DEPLOY_TEMPORAL_ADDRESS to an address this machine reaches (kubectl port-forward and localhost:7233), and check TEMPORAL_NAMESPACE and the credentials.$skip" ;;
    4) printf '%s' "Key Vault could not be read from this machine (the ERROR above says why), so no workflow was replayed: the check reads the encryption key and any Temporal credentials in KEYVAULT_URL's vault with your az login; check that this machine reaches the vault (its firewall) and that your account may read its secrets.$skip" ;;
    5) printf '%s' "Payload storage could not be used from this machine (the ERROR above says why), so no workflow was replayed: the check reads the payloads stored in PAYLOAD_STORAGE_ACCOUNT_URL's container with your az login; check that this machine reaches the account (its firewall) and that your account may read its blobs.$skip" ;;
    *) printf '%s' "the replay check stopped (exit status $1; the message above says why).$skip" ;;
  esac
}

# With WORKER_VERSIONING=true: make the new version current (or ramp it), through the SDK in deploy/rollout.py;
# with ROLLOUT_STEPS, ramp it through the steps with a gate at each (deploy/progressive.py; the plan is printed
# first, in a dry run too). A failed gate has rolled the ramp back when progressive.py exits 1: the hint says so.
route_new_workflows() {
  local status=0
  if [ "$WORKER_VERSIONING" != true ]; then
    echo "  Versioning is off (WORKER_VERSIONING=false): the rolling update moved every worker to $APP_IMAGE."
    return 0
  fi
  if [ -n "$PLAN_ROLLOUT_STEPS" ]; then
    ! $DRY_RUN || run_local "$SC_PYTHON" "$REPO_DIR/deploy/progressive.py" plan "$IMAGE_TAG"
    run "$SC_PYTHON" "$REPO_DIR/deploy/progressive.py" run "$IMAGE_TAG" || status=$?
    [ "$status" -ne 0 ] || return 0
    STEP_HINT=$(progressive_hint "$status")
    return "$status"
  fi
  if [ -n "$PLAN_RAMP" ]; then
    run "$SC_PYTHON" "$REPO_DIR/deploy/rollout.py" set-current "$IMAGE_TAG" --ramp "$PLAN_RAMP"
  else
    run "$SC_PYTHON" "$REPO_DIR/deploy/rollout.py" set-current "$IMAGE_TAG"
  fi
}

# progressive_hint STATUS: the routing step's hint for deploy/progressive.py's exit status.
progressive_hint() {
  case $1 in
    1) printf '%s' "the gate failed (or Temporal refused, as the message above says): the ramp is removed and the version that was current gets every new workflow again; the failed version's Deployment stays for its pinned workflows (listed above) until ./patch.sh --clean-up deletes it once drained. Fix the code, then deploy again." ;;
    130 | 143) printf '%s' "stopped during the steps: the message above says which version ramps at which percentage; ./deploy.sh again (nothing is rebuilt) resumes at that step, ./patch.sh --rollback removes the ramp." ;;
    *) printf '%s' "the steps stopped (exit status $1; the message above says why); ./deploy.sh again (nothing is rebuilt) resumes or restarts them and says which." ;;
  esac
}

# The versions Temporal reports drained and neither current nor ramping lose their Deployment (and ScaledObject),
# then Temporal is asked to forget them. deploy/rollout.py decides (read-only, so a dry run shows the list); the
# deletions go through run. The lines are read from fd 3 so that no command in the loop can swallow them.
delete_drained_versions() {
  local drained build_id name
  print_command "$SC_PYTHON" "$REPO_DIR/deploy/rollout.py" drained
  drained=$("$SC_PYTHON" "$REPO_DIR/deploy/rollout.py" drained)
  if [ -z "$drained" ]; then
    echo "  No version is drained and unused: nothing to delete."
    return 0
  fi
  while read -r build_id name <&3; do
    kube delete deployment "$name" --ignore-not-found
    [ "$KEDA_ENABLED" != true ] || kube delete scaledobject.keda.sh "$name" --ignore-not-found
    run "$SC_PYTHON" "$REPO_DIR/deploy/rollout.py" forget "$build_id"
  done 3<<<"$drained"
}

# ---------------------------------------------------------------- 6 to 8. cluster

# Idempotent; the namespace enforces the Pod Security Standards "restricted" profile (namespace.yaml).
create_namespace() {
  run kubectl --context "$KUBE_CONTEXT" "${APPLY[@]}" --filename "$MANIFEST_DIR/namespace.yaml"
}

# Apply the rendered files among FILES (in the order given), skipping the namespace, applied on its own.
# A Secret created by client-side apply keeps its data (as it was then) in the last-applied-configuration
# annotation, which server-side apply leaves alone: the Secrets applied are cleared of it.
apply_files() {
  local file secrets applied_secrets=()
  secrets=" $(tr '\n' ' ' <<<"$PLAN_SECRET_FILES") "
  for file in "$@"; do
    [ "$file" != namespace.yaml ] && [ -f "$MANIFEST_DIR/$file" ] || continue
    kube "${APPLY[@]}" --filename "$MANIFEST_DIR/$file"
    case $secrets in
      *" $file "*) applied_secrets+=(--filename "$MANIFEST_DIR/$file") ;;
    esac
  done
  [ ${#applied_secrets[@]} -eq 0 ] || kube annotate "${applied_secrets[@]}" "$LAST_APPLIED_ANNOTATION-"
}

apply_manifests() {
  # shellcheck disable=SC2086  # file names without spaces, one per line
  apply_files $PLAN_FILES
  delete_switched_off
}

apply_configuration() {
  # shellcheck disable=SC2086  # file names without spaces, one per line
  apply_files $PLAN_CONFIGURATION_FILES
  delete_switched_off
}

# After applying: delete the objects of features that are now off (deploy/manifests.py switched_off decides, by the
# app's labels; PLAN_PRUNE, a line per kubectl delete). Kinds that a CRD defines are deleted only where the
# cluster has them (kubectl api-resources, read-only; a dry run assumes it has them all and shows every delete).
delete_switched_off() {
  local available="" selector fields resources resource kept
  [ -n "$PLAN_PRUNE" ] || return 0
  if grep -qxFf <(printf '%s\n' "$PLAN_CUSTOM_RESOURCES") <(tr ',\t' '\n' <<<"$PLAN_PRUNE"); then
    capture available kubectl --context "$KUBE_CONTEXT" api-resources --output name
  fi
  while IFS=$'\t' read -r resources selector fields <&3; do
    kept=""
    for resource in ${resources//,/ }; do
      if ! $DRY_RUN && grep -qxF -- "$resource" <<<"$PLAN_CUSTOM_RESOURCES" && ! grep -qxF -- "$resource" <<<"$available"; then
        continue # the cluster has no such kind, so no such object
      fi
      kept="${kept:+$kept,}$resource"
    done
    [ -n "$kept" ] || continue
    if [ -n "$fields" ]; then
      kube delete "$kept" --selector "$selector" --field-selector "$fields" --ignore-not-found
    else
      kube delete "$kept" --selector "$selector" --ignore-not-found
    fi
  done 3<<<"$PLAN_PRUNE"
}

# With versioning every version's Deployment reads the shared ConfigMap and Secrets: restart them all.
restart_rollout() {
  if [ "$WORKER_VERSIONING" = true ]; then
    kube rollout restart deployment --selector "$PLAN_POD_SELECTOR" # the codec server's too
  else
    kube rollout restart "deployment/$APP_NAME"
    ! codec_server_deployed || kube rollout restart "deployment/$PLAN_CODEC_SERVER_DEPLOYMENT"
  fi
}

set_image() {
  kube set image "deployment/$APP_NAME" "worker=$DEPLOY_IMAGE"
  set_codec_server_image
}

wait_for_rollout() {
  kube rollout status "deployment/$PLAN_KUBERNETES_DEPLOYMENT" --timeout "$ROLLOUT_TIMEOUT"
  ! codec_server_deployed || kube rollout status "deployment/$PLAN_CODEC_SERVER_DEPLOYMENT" --timeout "$ROLLOUT_TIMEOUT"
}

# After a configuration change with versioning: every version's Deployment, as the cluster lists them.
wait_for_every_version() {
  local deployments deployment
  print_command kubectl --context "$KUBE_CONTEXT" --namespace "$KUBERNETES_NAMESPACE" get deployment --selector "$PLAN_POD_SELECTOR" --output name
  if $DRY_RUN; then
    echo "  (dry run: then, for each Deployment listed:)"
    kube rollout status "deployment/<each>" --timeout "$ROLLOUT_TIMEOUT"
    return 0
  fi
  deployments=$(kubectl --context "$KUBE_CONTEXT" --namespace "$KUBERNETES_NAMESPACE" get deployment --selector "$PLAN_POD_SELECTOR" --output name)
  for deployment in $deployments; do
    kube rollout status "$deployment" --timeout "$ROLLOUT_TIMEOUT"
  done
}

# The Deployment of this version starts next to the older ones (patch.sh with WORKER_VERSIONING=true).
start_version() {
  apply_files deployment.yaml keda-scaledobject.yaml
  set_codec_server_image
}

rollout_hint() {
  local kubectl=(kubectl --context "$KUBE_CONTEXT" --namespace "$KUBERNETES_NAMESPACE")
  printf '%s' "see why the pods are not ready: $(command_line "${kubectl[@]}" describe pods --selector "$PLAN_POD_SELECTOR")"
  printf '%s' " (ImagePullBackOff: let the cluster pull from ACR with $(aks_command update --attach-acr "$ACR_NAME");"
  printf '%s' " CrashLoopBackOff or not ready: read the log with $(command_line "${kubectl[@]}" logs "deployment/$PLAN_KUBERNETES_DEPLOYMENT")"
  [ "$NETWORK_POLICY" != true ] || printf '%s' "; a timeout reaching Key Vault or Temporal behind a private address: add it to NETWORK_POLICY_EGRESS_CIDRS"
  printf '%s' ")."
}

show_pods_and_logs_command() {
  echo
  kube get pods --selector "$PLAN_POD_SELECTOR" --output wide
  $DRY_RUN && return 0
  cat <<TEXT

Done: $APP_IMAGE is rolled out. Read the worker's log with:
  $(command_line kubectl --context "$KUBE_CONTEXT" --namespace "$KUBERNETES_NAMESPACE" logs "deployment/$PLAN_KUBERNETES_DEPLOYMENT" --follow)
A worker that reached Temporal prints:
  Initializing worker...
  Starting worker... Awaiting tasks.
TEXT
  codec_server_deployed || return 0
  printf 'The codec server'"'"'s log: %s\n' \
    "$(command_line kubectl --context "$KUBE_CONTEXT" --namespace "$KUBERNETES_NAMESPACE" logs "deployment/$PLAN_CODEC_SERVER_DEPLOYMENT" --follow)"
}

# ---------------------------------------------------------------- payload storage (deploy.sh's hints)

STORAGE_ACCOUNT_ID=""
STORAGE_ACCOUNT_GROUP=""

# Look the payload storage account up (read-only; not in a dry run): its resource id and resource group.
lookup_storage_account() {
  local account=$1 found
  print_command az storage account show --name "$account" --subscription "$AZURE_SUBSCRIPTION_ID" \
    --query "[id, resourceGroup]" --output tsv
  $DRY_RUN && return 1
  found=$(az storage account show --name "$account" --subscription "$AZURE_SUBSCRIPTION_ID" \
    --query "[id, resourceGroup]" --output tsv 2>/dev/null) || return 1
  read -r STORAGE_ACCOUNT_ID STORAGE_ACCOUNT_GROUP <<<"$found"
  [ -n "$STORAGE_ACCOUNT_ID" ] && [ -n "$STORAGE_ACCOUNT_GROUP" ]
}

# With PAYLOAD_STORAGE_ACCOUNT_URL: the role the worker's identity needs on the container, and the policy that
# deletes old blobs. Printed, not run: a role assignment needs Owner or User Access Administrator on the account
# (rarely the deployer's), and a lifecycle policy replaces the account's whole policy.
payload_storage_hints() {
  [ -n "$PLAN_PAYLOAD_STORAGE_ACCOUNT" ] || return 0
  local account=$PLAN_PAYLOAD_STORAGE_ACCOUNT scope group
  local assignee=${AZURE_CLIENT_ID:-"<client id of the worker's managed identity>"}
  printf '\nPayload storage: container %s of storage account %s. Looking the account up:\n' "$PAYLOAD_STORAGE_CONTAINER" "$(shell_word "$account")"
  if lookup_storage_account "$account"; then
    scope="$STORAGE_ACCOUNT_ID/blobServices/default/containers/$PAYLOAD_STORAGE_CONTAINER"
    group=$STORAGE_ACCOUNT_GROUP
  else
    $DRY_RUN || echo "  (not found in subscription $AZURE_SUBSCRIPTION_ID, or no access: fill in its id and resource group below)"
    scope="<id of storage account $account>/blobServices/default/containers/$PAYLOAD_STORAGE_CONTAINER"
    group="<resource group of storage account $account>"
  fi
  echo "The worker's identity needs the role \"Storage Blob Data Contributor\" on the container; once, as an"
  echo "Owner or User Access Administrator of the account (deploy.sh does not grant roles):"
  print_command az role assignment create --role "Storage Blob Data Contributor" --assignee "$assignee" --scope "$scope"
  if [ -f "$PLAN_PAYLOAD_RETENTION" ]; then
    echo "Blobs outlive workflow histories: apply the rendered lifecycle policy, which deletes them"
    echo "$PAYLOAD_STORAGE_RETENTION_DAYS days after they were written (it replaces the account's policy: if the"
    echo "account has rules of its own, add this one to them instead):"
    print_command az storage account management-policy create --account-name "$account" --resource-group "$group" \
      --subscription "$AZURE_SUBSCRIPTION_ID" --policy "@$PLAN_PAYLOAD_RETENTION"
  else
    echo "$PLAN_PAYLOAD_RETENTION (CONFIGURATION.md, retention)."
  fi
}

# ---------------------------------------------------------------- the codec server (CODEC_SERVER_DEPLOY=true)

# The plan names its Deployment only when it is deployed.
codec_server_deployed() {
  [ -n "$PLAN_CODEC_SERVER_DEPLOYMENT" ]
}

# patch.sh: the codec server runs the same image as the workers.
set_codec_server_image() {
  ! codec_server_deployed || kube set image "deployment/$PLAN_CODEC_SERVER_DEPLOYMENT" "codec-server=$DEPLOY_IMAGE"
}

# deploy.sh's last words with CODEC_SERVER_DEPLOY=true: where the Web UI reaches it, and the federated credential
# and read-only roles its identity needs. Printed, not run: they need Owner or User Access Administrator rights,
# rarely the deployer's (docs/deploy.md#codec-server walks through them).
codec_server_hints() {
  codec_server_deployed || return 0
  local assignee=${CODEC_SERVER_AZURE_CLIENT_ID:-"<client id of the codec server's managed identity>"}
  local account=$PLAN_PAYLOAD_STORAGE_ACCOUNT storage_scope
  printf '\nCodec server: deployment/%s, %s replicas.\n' "$PLAN_CODEC_SERVER_DEPLOYMENT" "$CODEC_SERVER_REPLICAS"
  if [ -n "$CODEC_SERVER_INGRESS_HOST" ]; then
    echo "The Web UI's codec endpoint: https://$CODEC_SERVER_INGRESS_HOST (point its DNS name at the application routing add-on)."
  else
    echo "No Ingress (CODEC_SERVER_INGRESS_HOST is empty); from this machine:"
    print_command kubectl --context "$KUBE_CONTEXT" --namespace "$KUBERNETES_NAMESPACE" port-forward "service/$PLAN_CODEC_SERVER_DEPLOYMENT" "$CODEC_SERVER_PORT:80"
  fi
  [ -n "$CODEC_SERVER_AZURE_CLIENT_ID" ] || [ -n "$PLAN_KEYVAULT_NAME$account" ] || return 0
  echo "Its own identity reads with read-only roles; once, as an Owner or User Access Administrator of each resource"
  echo "(deploy.sh grants nothing; the issuer is what $(aks_command show --query oidcIssuerProfile.issuerUrl --output tsv) prints):"
  print_command az identity federated-credential create --name "$PLAN_CODEC_SERVER_DEPLOYMENT" \
    --identity-name "<name of the codec server identity>" --resource-group "<resource group of that identity>" \
    --issuer "<OIDC issuer URL of the cluster>" \
    --subject "system:serviceaccount:$KUBERNETES_NAMESPACE:$PLAN_CODEC_SERVER_DEPLOYMENT" --audiences api://AzureADTokenExchange
  if [ -n "$PLAN_KEYVAULT_NAME" ]; then
    print_command az role assignment create --role "Key Vault Secrets User" --assignee "$assignee" \
      --scope "<id of key vault $PLAN_KEYVAULT_NAME>"
  fi
  if [ -n "$account" ]; then
    if [ -n "$STORAGE_ACCOUNT_ID" ]; then
      storage_scope="$STORAGE_ACCOUNT_ID/blobServices/default/containers/$PAYLOAD_STORAGE_CONTAINER"
    else
      storage_scope="<id of storage account $account>/blobServices/default/containers/$PAYLOAD_STORAGE_CONTAINER"
    fi
    print_command az role assignment create --role "Storage Blob Data Reader" --assignee "$assignee" --scope "$storage_scope"
  fi
}
