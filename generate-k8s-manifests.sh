#!/usr/bin/env bash
# generate-k8s-manifests.sh: render the worker's Kubernetes manifests from config.env.
# Run with --help for what it writes. deploy/plan.py does the work: it checks the configuration
# (deploy/deploy_config.py) and writes every manifest as data (deploy/manifests.py), so no value is ever
# interpolated into YAML text and no secret is ever on a command line.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./generate-k8s-manifests.sh [--output-dir DIR]

Renders the worker's Kubernetes manifests from config.env and the environment (see
source_config.sh) into DIR, by default the directory of this script:

  namespace.yaml                the namespace, enforcing Pod Security "restricted"
  config-map.yaml               the non-secret app settings (ConfigMap)
  network-policy.yaml           egress only to DNS, Temporal and public HTTPS (when NETWORK_POLICY=true, the default)
  app-secret.yaml               the secret app settings, such as TEMPORAL_API_KEY (Secret)
  temporal-tls-secret.yaml      the mTLS certificate files (Secret; empty without TEMPORAL_TLS_*_PATH)
  deployment.yaml               the worker Deployment
  pod-disruption-budget.yaml    keeps node drains from stopping every worker at once
  acr-secret.yaml               image pull Secret for ACR                (when ACR_USERNAME/ACR_PASSWORD are set)
  service-account.yaml          ServiceAccount for Azure Workload Identity (when AZURE_CLIENT_ID is set)
  keda-scaledobject.yaml        KEDA ScaledObject (+ TriggerAuthentication) (when KEDA_ENABLED=true)
  pod-monitor.yaml              PodMonitor for Prometheus   (when METRICS_SCRAPE=podmonitor or prometheus-operator)
  prometheus-rules.yaml         PrometheusRule with the alert rules    (when METRICS_SCRAPE=prometheus-operator)
  codec-server-*.yaml           the team's codec server: ServiceAccount, Secret, ConfigMap, NetworkPolicy,
                                Deployment, PodDisruptionBudget, Service, Ingress (when CODEC_SERVER_DEPLOY=true;
                                the Ingress with CODEC_SERVER_INGRESS_HOST)

With TEMPORAL_API_KEY_KEYVAULT_SECRET (or TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE) the
credential stays in Key Vault: no Secret holds it, and KEDA reads it from the vault too.
The output says where each Temporal credential comes from.

Secret files are written with mode 0600 and are gitignored. Files of features that are
off are removed. Nothing is written when the configuration has a problem (exit status 2).
The Deployment runs APP_IMAGE: deploy.sh and patch.sh render again with the pushed image's
digest (APP_IMAGE=REGISTRY/REPOSITORY:TAG@sha256:... in the environment).
The first run creates .venv with the runtime requirements (requirements.txt).

Options:
  --output-dir DIR   write the manifests to DIR instead of the script's directory
  -h, --help         this text
USAGE
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"
# shellcheck source=ensure_venv.sh
source "$REPO_DIR/ensure_venv.sh"

main() {
  local status=0
  parse_arguments "--output-dir" "$@"
  ensure_venv "$REPO_DIR/.venv" "$REPO_DIR/requirements.txt"
  "$REPO_DIR/.venv/bin/python" "$REPO_DIR/deploy/plan.py" render "${OUTPUT_DIR:-$REPO_DIR}" || status=$?
  [ "$status" -eq 0 ] || die "nothing was rendered; fix the configuration above" "$status"
}

main "$@"
