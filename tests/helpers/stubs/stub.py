"""Stand-in for az, docker and kubectl in the deploy tests: records every call, answers like the tool.

Each call appends one JSON line to $STUB_LOG: {"tool": ..., "argv": [...], "stdin": ...}.
kubectl calls that only render locally (--dry-run=client, --local) are handed to the real
kubectl ($REAL_KUBECTL) after being recorded, so manifests are built exactly as on a laptop.

Knobs (environment):
  STUB_FAIL           lines of substrings; a call whose "tool arg arg..." contains one fails (exit 1)
  STUB_SUBSCRIPTION   what `az account show --query id` prints
  STUB_CONTEXTS       lines printed by `kubectl config get-contexts --output name`
  STUB_ACR_TOKEN      what `az acr login --expose-token` prints
  STUB_IMAGE_EXISTS   "1": `az acr repository show` finds the image
"""

import fcntl
import json
import os
import sys


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
    if tool == "az" and words.startswith("acr repository show"):
        return (0, "") if os.environ.get("STUB_IMAGE_EXISTS") == "1" else (3, "")
    if tool == "kubectl" and "config get-contexts" in words:
        return 0, os.environ.get("STUB_CONTEXTS", "") + "\n"
    if tool == "kubectl" and "auth can-i" in words:
        return 0, "yes\n"
    if tool == "kubectl" and "rollout status" in words:
        return 0, 'deployment "stub" successfully rolled out\n'
    if tool == "docker" and words.startswith("login"):
        return 0, "Login Succeeded\n"
    return 0, ""


def main() -> int:
    tool, arguments = sys.argv[1], sys.argv[2:]
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
    status, output = answer(tool, arguments)
    sys.stdout.write(output)
    return status


if __name__ == "__main__":
    sys.exit(main())
