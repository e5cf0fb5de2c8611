#!/usr/bin/env bash
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./test.sh [pytest arguments]

Creates or updates the test virtual environment (.venv-test) from
requirements-dev.txt, puts its tools (temporal, kubectl, shellcheck, hadolint)
first on PATH and runs pytest with the given arguments, e.g.
  ./test.sh                      the whole suite, in parallel
  ./test.sh tests/app            one part: tests/app, tests/deploy or tests/e2e
  ./test.sh tests/app/test_config.py -n 0 -x
Needs only Python 3.11+ and bash; everything else is installed from PyPI.
USAGE
}

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    return 0
  fi
  local repo_dir
  repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  cd "$repo_dir"
  # shellcheck source=ensure_venv.sh
  source ./ensure_venv.sh
  ensure_venv "$repo_dir/.venv-test" "$repo_dir/requirements-dev.txt"
  export PATH="$repo_dir/.venv-test/bin:$PATH"
  exec "$repo_dir/.venv-test/bin/python" -m pytest "$@"
}

main "$@"
