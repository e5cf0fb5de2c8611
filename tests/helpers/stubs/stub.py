"""The one stand-in for az, docker and kubectl: answers like the tool, records calls in the deploy tests.

The shell wrappers next to this file (`az`, `docker`, `kubectl`) run it as `$STUB_PYTHON stub.py TOOL ARGS`.

`az account get-access-token ...` is what azure-identity's AzureCliCredential runs (the Key Vault
tests, through fake_keyvault.azure_cli_environment): it prints a token response whose accessToken is
$STUB_AZ_ACCESS_TOKEN, or with STUB_AZ_LOGGED_OUT=1 fails like a CLI nobody has logged in to.
Those tests set no STUB_LOG, and then that is the only call answered: anything else fails (exit 2).

The deploy tests (deploy_harness.Project) set STUB_LOG: each call appends one JSON line to it,
{"tool": ..., "argv": [...], "stdin": ...}, and is answered like the real tool would.
kubectl calls that only render locally (--dry-run=client, --local) are handed to the real
kubectl ($REAL_KUBECTL) after being recorded, so manifests are built exactly as on a laptop.

Knobs (environment):
  STUB_LOG              where calls are recorded; unset: nothing is recorded, only tokens are answered
  STUB_FAIL             lines of substrings; a call whose "tool arg arg..." contains one fails (exit 1)
  STUB_SUBSCRIPTION     what `az account show --query id` prints
  STUB_CONTEXTS         lines printed by `kubectl config get-contexts --output name`
  STUB_ACR_TOKEN        what `az acr login --expose-token` prints
  STUB_IMAGE_EXISTS     "1": `az acr repository show` finds the image
  STUB_DEPLOYMENTS      lines printed by `kubectl get deployment ... --output name`
  STUB_IMAGE_DIGEST     what `az acr repository show --query digest` prints (the pushed image's digest)
  STUB_AZ_ACCESS_TOKEN  the accessToken that `az account get-access-token` prints
  STUB_AZ_STORAGE_ACCESS_TOKEN  the one it prints for Azure Storage (--resource/--scope https://storage.azure.com),
                        when set (Azurite's OAuth mode wants a JWT; the fake Key Vault wants its own token)
  STUB_STORAGE_ACCOUNT  "ID<TAB>RESOURCE GROUP" that `az storage account show` prints; unset: not found (exit 3)
  STUB_AZ_LOGGED_OUT    "1": `az account get-access-token` fails as it does before `az login`
  STUB_API_RESOURCES    lines printed by `kubectl api-resources --output name`; unset: a few built-in kinds and
                        every custom resource the manifests use (KEDA, both PodMonitors, PrometheusRule)
It never contacts anything.
"""

import fcntl
import json
import os
import sys
import time

# What `az account get-access-token` reports besides the token (the fake Key Vault's tenant).
TOKEN_TENANT = "00000000-0000-0000-0000-000000000001"
TOKEN_SUBSCRIPTION = "00000000-0000-0000-0000-000000000002"
# What `kubectl api-resources --output name` prints unless STUB_API_RESOURCES says otherwise: a cluster with KEDA,
# Azure Monitor managed Prometheus and prometheus-operator.
STUB_API_RESOURCES = (
    "secrets\nserviceaccounts\ndeployments.apps\nnetworkpolicies.networking.k8s.io\n"
    "scaledobjects.keda.sh\ntriggerauthentications.keda.sh\npodmonitors.azmonitoring.coreos.com\n"
    "podmonitors.monitoring.coreos.com\nprometheusrules.monitoring.coreos.com"
)
# What `az acr repository show --query digest` prints unless STUB_IMAGE_DIGEST says otherwise.
STUB_IMAGE_DIGEST = "sha256:" + "5e" * 32


def record(tool: str, arguments: list[str], stdin: str | None) -> None:
    line = json.dumps({"tool": tool, "argv": arguments, "stdin": stdin}, ensure_ascii=False) + "\n"
    with open(os.environ["STUB_LOG"], "a", encoding="utf-8") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write(line)


def renders_locally(tool: str, arguments: list[str]) -> bool:
    return tool == "kubectl" and ("--dry-run=client" in arguments or "--local" in arguments)


def answer(tool: str, arguments: list[str]) -> tuple[int, str]:
    """(exit status, stdout) of a real tool that succeeded."""
    words = " ".join(arguments)
    if tool == "az" and words.startswith("account show"):
        return 0, os.environ.get("STUB_SUBSCRIPTION", "") + "\n"
    if tool == "az" and words.startswith("acr show"):
        return 0, "stub.azurecr.io\n"
    if tool == "az" and words.startswith("acr login") and "--expose-token" in arguments:
        return 0, os.environ.get("STUB_ACR_TOKEN", "stub-token") + "\n"
    if tool == "az" and words.startswith("storage account show"):
        found = os.environ.get("STUB_STORAGE_ACCOUNT")
        return (0, found + "\n") if found else (3, "")
    if tool == "az" and words.startswith("acr repository show") and "--query digest" in words:
        return 0, os.environ.get("STUB_IMAGE_DIGEST", STUB_IMAGE_DIGEST) + "\n"  # after a push, the image exists
    if tool == "az" and words.startswith("acr repository show"):
        return (0, "") if os.environ.get("STUB_IMAGE_EXISTS") == "1" else (3, "")
    if tool == "kubectl" and "config get-contexts" in words:
        return 0, os.environ.get("STUB_CONTEXTS", "") + "\n"
    if tool == "kubectl" and "auth can-i" in words:
        return 0, "yes\n"
    if tool == "kubectl" and "get deployment" in words and "--output name" in words:
        return 0, os.environ.get("STUB_DEPLOYMENTS", "") + "\n"
    if tool == "kubectl" and "api-resources" in arguments:
        return 0, os.environ.get("STUB_API_RESOURCES", STUB_API_RESOURCES) + "\n"
    if tool == "kubectl" and "rollout status" in words:
        return 0, 'deployment "stub" successfully rolled out\n'
    if tool == "docker" and words.startswith("login"):
        return 0, "Login Succeeded\n"
    return 0, ""


def is_token_request(tool: str, arguments: list[str]) -> bool:
    """`az account get-access-token --output json --resource RESOURCE [--tenant TENANT]` (or --scope SCOPE)."""
    return tool == "az" and arguments[:2] == ["account", "get-access-token"]


def answer_token_request(arguments: list[str]) -> int:
    """Print what `az account get-access-token --output json` prints for a logged-in user."""
    if os.environ.get("STUB_AZ_LOGGED_OUT"):
        print("ERROR: Please run 'az login' to setup account.", file=sys.stderr)
        return 1
    token = os.environ.get("STUB_AZ_ACCESS_TOKEN")
    if any(argument.startswith("https://storage.azure.com") for argument in arguments):
        token = os.environ.get("STUB_AZ_STORAGE_ACCESS_TOKEN") or token
    if not token:
        print("stub az: set STUB_AZ_ACCESS_TOKEN", file=sys.stderr)
        return 2
    expires_on = int(time.time()) + 3600
    response = {
        "accessToken": token,
        "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(expires_on)),
        "expires_on": expires_on,
        "subscription": TOKEN_SUBSCRIPTION,
        "tenant": TOKEN_TENANT,
        "tokenType": "Bearer",
    }
    sys.stdout.write(json.dumps(response, indent=2) + "\n")
    return 0


def main() -> int:
    tool, arguments = sys.argv[1], sys.argv[2:]
    recording = bool(os.environ.get("STUB_LOG"))
    if not recording and not is_token_request(tool, arguments):
        print(
            f"stub {tool}: without STUB_LOG only 'az account get-access-token' is answered, not: {tool} "
            + " ".join(arguments),
            file=sys.stderr,
        )
        return 2
    if recording:
        if renders_locally(tool, arguments):
            record(tool, arguments, None)
            os.execv(os.environ["REAL_KUBECTL"], ["kubectl", *arguments])
        stdin = sys.stdin.read() if not sys.stdin.isatty() else None
        record(tool, arguments, stdin)
    call = " ".join([tool, *arguments])
    failures = [line for line in os.environ.get("STUB_FAIL", "").splitlines() if line]
    if any(failure in call for failure in failures):
        print(f"{tool}: simulated failure", file=sys.stderr)
        return 1
    if is_token_request(tool, arguments):
        return answer_token_request(arguments)
    status, output = answer(tool, arguments)
    sys.stdout.write(output)
    return status


if __name__ == "__main__":
    sys.exit(main())
