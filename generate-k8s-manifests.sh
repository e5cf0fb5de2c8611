#!/usr/bin/env bash
# generate-k8s-manifests.sh: render the worker's Kubernetes manifests from config.env.
# Run with --help for what it writes. ConfigMaps and Secrets are built by
# `kubectl create ... --dry-run=client` from one private file per value, so every value arrives
# byte-exact; no secret is ever on a command line.
# shellcheck disable=SC2154  # configuration variables come from source_config.sh
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./generate-k8s-manifests.sh [--output-dir DIR]

Renders the worker's Kubernetes manifests from config.env and the environment (see
source_config.sh) into DIR, by default the directory of this script:

  config-map.yaml               the non-secret app settings (ConfigMap)
  deployment.yaml               the worker Deployment
  pod-disruption-budget.yaml    keeps node drains from stopping every worker at once
  temporal-api-key-secret.yaml  Secret with TEMPORAL_API_KEY            (when it is set)
  temporal-tls-secret.yaml      Secret with the mTLS certificate files   (when TEMPORAL_TLS_*_PATH are set)
  acr-secret.yaml               image pull Secret for ACR                (when ACR_USERNAME/ACR_PASSWORD are set)
  service-account.yaml          ServiceAccount for Azure Workload Identity (when AZURE_CLIENT_ID is set)
  keda-scaledobject.yaml        KEDA ScaledObject (+ TriggerAuthentication) (when KEDA_ENABLED=true)

Secret files are written with mode 0600 and are gitignored. Files of features that are
off are removed. Nothing is written when the configuration has a problem.

Options:
  --output-dir DIR   write the manifests to DIR instead of the script's directory
  -h, --help         this text
USAGE
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUTPUT_DIR=$SCRIPT_DIR
STAGE_DIR=""
# shellcheck source=scripts/common.sh
source "$SCRIPT_DIR/scripts/common.sh"

parse_arguments() {
  while [ $# -gt 0 ]; do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --output-dir)
        [ $# -ge 2 ] || die "--output-dir needs a directory" 2
        OUTPUT_DIR=$2
        shift 2
        ;;
      --output-dir=*) OUTPUT_DIR=${1#*=}; shift ;;
      *) die "unknown argument '$1'; see --help" 2 ;;
    esac
  done
}

# A private directory (0700, files 0600) for values and staged manifests; removed on exit.
make_stage_dir() {
  umask 077
  STAGE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/temporal-aks-manifests.XXXXXX")
  trap 'rm -rf "$STAGE_DIR"' EXIT
  mkdir "$STAGE_DIR/values" "$STAGE_DIR/secret-values" "$STAGE_DIR/out"
}

# ---------------------------------------------------------------- labels

label_arguments() {
  printf '%s\n' \
    "app.kubernetes.io/name=$APP_NAME" \
    "app.kubernetes.io/instance=$APP_NAME" \
    "app.kubernetes.io/version=$IMAGE_TAG" \
    "app.kubernetes.io/component=worker" \
    "app.kubernetes.io/part-of=temporal-aks" \
    "app.kubernetes.io/managed-by=generate-k8s-manifests.sh"
}

# The labels as a YAML mapping body, each line indented by $1 spaces.
yaml_labels() {
  local indent=$1 label
  while IFS= read -r label; do
    printf '%*s%s: "%s"\n' "$indent" "" "${label%%=*}" "${label#*=}"
  done < <(label_arguments)
}

yaml_selector_labels() {
  printf '%*sapp.kubernetes.io/name: "%s"\n' "$1" "" "$APP_NAME"
  printf '%*sapp.kubernetes.io/instance: "%s"\n' "$1" "" "$APP_NAME"
}

# kubectl create ... --dry-run=client output on stdin, labelled, on stdout.
add_labels() {
  local labels=() label
  while IFS= read -r label; do labels+=("$label"); done < <(label_arguments)
  kubectl label --local --filename - --output yaml "${labels[@]}"
}

# ---------------------------------------------------------------- ConfigMap and Secrets

# The value a setting has inside the pod: TLS files live where the Secret is mounted.
pod_value() {
  case $1 in
    TEMPORAL_TLS_CLIENT_CERT_PATH) printf '%s' "$TLS_MOUNT_DIR/client.crt" ;;
    TEMPORAL_TLS_CLIENT_KEY_PATH) printf '%s' "$TLS_MOUNT_DIR/client.key" ;;
    TEMPORAL_TLS_SERVER_CA_CERT_PATH) printf '%s' "$TLS_MOUNT_DIR/server-ca.crt" ;;
    *) printf '%s' "${!1}" ;;
  esac
}

# App settings in the ConfigMap: not secret, not empty, not test-only.
is_config_map_variable() {
  case $1 in
    KEYVAULT_CA_FILE | KEYVAULT_VERIFY_CHALLENGE_RESOURCE) return 1 ;;
  esac
  ! sc_is_secret "$1" && [ -n "${!1}" ]
}

render_config_map() {
  local name sources=()
  for name in $SC_APP_VARIABLES; do
    is_config_map_variable "$name" || continue
    pod_value "$name" >"$STAGE_DIR/values/$name"
    sources+=("--from-file=$name=$STAGE_DIR/values/$name")
  done
  kubectl create configmap "$CONFIG_MAP_NAME" --namespace "$KUBERNETES_NAMESPACE" "${sources[@]}" \
    --dry-run=client --output yaml | add_labels
}

# printf is a bash builtin, so the secret reaches the file without appearing in any argv.
render_api_key_secret() {
  printf '%s' "$TEMPORAL_API_KEY" >"$STAGE_DIR/secret-values/TEMPORAL_API_KEY"
  kubectl create secret generic "$API_KEY_SECRET_NAME" --namespace "$KUBERNETES_NAMESPACE" \
    "--from-file=TEMPORAL_API_KEY=$STAGE_DIR/secret-values/TEMPORAL_API_KEY" \
    --dry-run=client --output yaml | add_labels
}

uses_tls_files() {
  [ -n "$TEMPORAL_TLS_CLIENT_CERT_PATH$TEMPORAL_TLS_CLIENT_KEY_PATH$TEMPORAL_TLS_SERVER_CA_CERT_PATH" ]
}

render_tls_secret() {
  local sources=()
  [ -z "$TEMPORAL_TLS_CLIENT_CERT_PATH" ] || sources+=("--from-file=client.crt=$TEMPORAL_TLS_CLIENT_CERT_PATH")
  [ -z "$TEMPORAL_TLS_CLIENT_KEY_PATH" ] || sources+=("--from-file=client.key=$TEMPORAL_TLS_CLIENT_KEY_PATH")
  [ -z "$TEMPORAL_TLS_SERVER_CA_CERT_PATH" ] || sources+=("--from-file=server-ca.crt=$TEMPORAL_TLS_SERVER_CA_CERT_PATH")
  kubectl create secret generic "$TLS_SECRET_NAME" --namespace "$KUBERNETES_NAMESPACE" "${sources[@]}" \
    --dry-run=client --output yaml | add_labels
}

render_pull_secret() {
  local config="$STAGE_DIR/secret-values/dockerconfig.json"
  printf '%s\0%s\0%s\0%s' "${APP_IMAGE%%/*}" "$ACR_USERNAME" "$ACR_PASSWORD" "$ACR_EMAIL" |
    manifest_helper docker-config >"$config"
  kubectl create secret generic "$PULL_SECRET_NAME" --namespace "$KUBERNETES_NAMESPACE" \
    --type=kubernetes.io/dockerconfigjson "--from-file=.dockerconfigjson=$config" \
    --dry-run=client --output yaml | add_labels
}

# ---------------------------------------------------------------- workload objects

render_service_account() {
  cat <<YAML
apiVersion: v1
kind: ServiceAccount
metadata:
  name: "$APP_NAME"
  namespace: "$KUBERNETES_NAMESPACE"
  labels:
$(yaml_labels 4)
  annotations:
    azure.workload.identity/client-id: "$AZURE_CLIENT_ID"
automountServiceAccountToken: false
YAML
}

# Changes whenever a ConfigMap or Secret changes, so that applying them rolls the pods.
config_checksum() {
  local files=() file
  for file in config-map.yaml $SECRET_MANIFEST_FILES; do
    [ ! -f "$STAGE_DIR/out/$file" ] || files+=("$STAGE_DIR/out/$file")
  done
  manifest_helper checksum "${files[@]}"
}

yaml_replicas() {
  if sc_is_true KEDA_ENABLED; then
    echo "  # replicas: managed by KEDA (keda-scaledobject.yaml), so applying this file never resets them"
  else
    echo "  replicas: $REPLICAS"
  fi
}

yaml_pod_identity() {
  [ -n "$AZURE_CLIENT_ID" ] || return 0
  echo "      serviceAccountName: \"$APP_NAME\""
}

yaml_pull_secrets() {
  [ -n "$ACR_USERNAME" ] || return 0
  printf '      imagePullSecrets:\n        - name: "%s"\n' "$PULL_SECRET_NAME"
}

yaml_workload_identity_label() {
  [ -n "$AZURE_CLIENT_ID" ] || return 0
  echo '        azure.workload.identity/use: "true"'
}

yaml_metrics_port() {
  [ "$METRICS_PORT" != 0 ] || return 0
  cat <<YAML
          ports:
            - name: metrics
              containerPort: $METRICS_PORT
              protocol: TCP
YAML
}

# Exec probes: the worker keeps \$WORKER_HEALTH_FILE fresh while it polls; healthcheck.py reads it.
yaml_probe() {
  local kind=$1 period=$2 failures=$3
  cat <<YAML
          $kind:
            exec:
              command: ["python", "healthcheck.py"]
            periodSeconds: $period
            timeoutSeconds: 5
            failureThreshold: $failures
YAML
}

render_deployment() {
  local checksum grace_period
  checksum=$(config_checksum)
  grace_period=$(manifest_helper grace-period "$WORKER_SHUTDOWN_TIMEOUT_SECONDS")
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: "$APP_NAME"
  namespace: "$KUBERNETES_NAMESPACE"
  labels:
$(yaml_labels 4)
spec:
$(yaml_replicas)
  revisionHistoryLimit: 5
  selector:
    matchLabels:
$(yaml_selector_labels 6)
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
$(yaml_labels 8)
$(yaml_workload_identity_label)
      annotations:
        temporal-aks/config-checksum: "$checksum"
    spec:
$(yaml_pod_identity)
      automountServiceAccountToken: false
      # Longer than WORKER_SHUTDOWN_TIMEOUT_SECONDS, so in-flight activities can finish after SIGTERM.
      terminationGracePeriodSeconds: $grace_period
$(yaml_pull_secrets)
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
$(yaml_selector_labels 14)
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
$(yaml_selector_labels 14)
      containers:
        - name: $CONTAINER_NAME
          image: "$APP_IMAGE"
          imagePullPolicy: IfNotPresent
          workingDir: /app
          envFrom:
            - configMapRef:
                name: "$CONFIG_MAP_NAME"
            # Present only when TEMPORAL_API_KEY is set (temporal-api-key-secret.yaml).
            - secretRef:
                name: "$API_KEY_SECRET_NAME"
                optional: true
$(yaml_metrics_port)
          resources:
            requests:
              cpu: "$CPU_REQUEST"
              memory: "$MEMORY_REQUEST"
            limits:
              cpu: "$CPU_LIMIT"
              memory: "$MEMORY_LIMIT"
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities:
              drop: ["ALL"]
$(yaml_probe startupProbe 5 60)
$(yaml_probe readinessProbe 10 3)
$(yaml_probe livenessProbe 15 4)
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: temporal-tls
              mountPath: "$TLS_MOUNT_DIR"
              readOnly: true
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        # Present only when TEMPORAL_TLS_*_PATH are set (temporal-tls-secret.yaml); files readable by the worker's group.
        - name: temporal-tls
          secret:
            secretName: "$TLS_SECRET_NAME"
            optional: true
            defaultMode: 288
YAML
}

render_pod_disruption_budget() {
  cat <<YAML
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: "$APP_NAME"
  namespace: "$KUBERNETES_NAMESPACE"
  labels:
$(yaml_labels 4)
spec:
  # One worker at a time may be evicted (node drains, upgrades); Temporal holds the tasks meanwhile.
  maxUnavailable: 1
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
$(yaml_selector_labels 6)
YAML
}

# ---------------------------------------------------------------- KEDA

# The value travels on stdin: as an argument, one longer than 128 KiB would fail (E2BIG) unnoticed
# inside the template's $(...), leaving an empty field.
quoted() {
  printf '%s' "$1" | manifest_helper yaml-string
}

needs_trigger_authentication() {
  [ -n "$TEMPORAL_API_KEY" ] || [ -n "$TEMPORAL_TLS_CLIENT_CERT_PATH" ]
}

yaml_secret_target() {
  printf '    - parameter: %s\n      name: "%s"\n      key: "%s"\n' "$1" "$2" "$3"
}

render_trigger_authentication() {
  cat <<YAML
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: "$TRIGGER_AUTH_NAME"
  namespace: "$KUBERNETES_NAMESPACE"
  labels:
$(yaml_labels 4)
spec:
  secretTargetRef:
YAML
  [ -z "$TEMPORAL_API_KEY" ] || yaml_secret_target apiKey "$API_KEY_SECRET_NAME" TEMPORAL_API_KEY
  [ -z "$TEMPORAL_TLS_CLIENT_CERT_PATH" ] || yaml_secret_target cert "$TLS_SECRET_NAME" client.crt
  [ -z "$TEMPORAL_TLS_CLIENT_KEY_PATH" ] || yaml_secret_target key "$TLS_SECRET_NAME" client.key
  [ -z "$TEMPORAL_TLS_SERVER_CA_CERT_PATH" ] || yaml_secret_target ca "$TLS_SECRET_NAME" server-ca.crt
  echo "---"
}

yaml_trigger_extras() {
  [ -z "$TEMPORAL_TLS_SERVER_NAME" ] || echo "        tlsServerName: $(quoted "$TEMPORAL_TLS_SERVER_NAME")"
  needs_trigger_authentication || return 0
  printf '      authenticationRef:\n        name: "%s"\n' "$TRIGGER_AUTH_NAME"
}

# Scales the Deployment on the task queue's backlog (KEDA's temporal scaler, KEDA 2.17+).
render_keda() {
  ! needs_trigger_authentication || render_trigger_authentication
  cat <<YAML
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: "$APP_NAME"
  namespace: "$KUBERNETES_NAMESPACE"
  labels:
$(yaml_labels 4)
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: "$APP_NAME"
  minReplicaCount: $KEDA_MIN_REPLICAS
  maxReplicaCount: $KEDA_MAX_REPLICAS
  triggers:
    - type: temporal
      metadata:
        endpoint: $(quoted "$TEMPORAL_ADDRESS")
        namespace: $(quoted "$TEMPORAL_NAMESPACE")
        taskQueue: $(quoted "$TEMPORAL_TASK_QUEUE")
        queueTypes: "workflow,activity"
        targetQueueSize: "$KEDA_TARGET_QUEUE_SIZE"
        activationTargetQueueSize: "0"
$(yaml_trigger_extras)
YAML
}

# ---------------------------------------------------------------- output

# Drop the blank lines that optional fragments leave in a template (never used on kubectl output,
# where a blank line can be part of a value).
without_blank_lines() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    [ -z "$line" ] || printf '%s\n' "$line"
  done
}

# Stage what kubectl rendered, untouched.
stage_rendered() {
  local file=$1
  shift
  "$@" >"$STAGE_DIR/out/$file"
}

stage_template() {
  local file=$1
  shift
  "$@" | without_blank_lines >"$STAGE_DIR/out/$file"
}

render_all() {
  stage_rendered config-map.yaml render_config_map
  [ -z "$TEMPORAL_API_KEY" ] || stage_rendered temporal-api-key-secret.yaml render_api_key_secret
  ! uses_tls_files || stage_rendered temporal-tls-secret.yaml render_tls_secret
  [ -z "$ACR_USERNAME" ] || stage_rendered acr-secret.yaml render_pull_secret
  [ -z "$AZURE_CLIENT_ID" ] || stage_template service-account.yaml render_service_account
  stage_template deployment.yaml render_deployment
  stage_template pod-disruption-budget.yaml render_pod_disruption_budget
  ! sc_is_true KEDA_ENABLED || stage_template keda-scaledobject.yaml render_keda
}

# Replace every manifest in OUTPUT_DIR at once: stale files of features now off are removed,
# Secret files keep mode 0600, the others become world-readable like any source file.
install_manifests() {
  local file
  mkdir -p "$OUTPUT_DIR"
  for file in $MANIFEST_FILES; do
    rm -f "$OUTPUT_DIR/$file"
  done
  for file in $MANIFEST_FILES; do
    [ -f "$STAGE_DIR/out/$file" ] || continue
    sc_in_list "$file" "$SECRET_MANIFEST_FILES" || chmod 0644 "$STAGE_DIR/out/$file"
    mv "$STAGE_DIR/out/$file" "$OUTPUT_DIR/$file"
    printf '  %s\n' "$OUTPUT_DIR/$file"
  done
}

main() {
  parse_arguments "$@"
  # shellcheck source=source_config.sh
  source "$SCRIPT_DIR/source_config.sh"
  sc_validate render || die "nothing was rendered; fix the configuration above"
  set_object_names
  make_stage_dir
  render_all
  echo "Rendered manifests for $APP_IMAGE in namespace $KUBERNETES_NAMESPACE:"
  install_manifests
}

main "$@"
