#!/usr/bin/env bash
# lock-requirements.sh: regenerate the hash-pinned lock files from the requirements files (see --help).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./lock-requirements.sh [uv pip compile options, such as --upgrade or --upgrade-package NAME]

Run it after changing requirements.txt, requirements-local.txt or requirements-dev.txt. It
writes one lock file per requirements file with uv pip compile (uv is in requirements-dev.txt;
the first run creates .venv-test):

  requirements.lock        from requirements.txt: the image (Dockerfile) and the deploy scripts' .venv
  requirements-local.lock  from requirements-local.txt, constrained to requirements.lock: ./start.sh's .venv
  requirements-dev.lock    from requirements-dev.txt, constrained to requirements-local.lock: .venv-test

Every lock pins every package, direct or not, with the sha256 of each of its files on PyPI,
for any platform and Python 3.11 or newer (a universal resolution). The constraints keep a
package at the same version in all three, so the tests run what the image runs. Pins already
in a lock file are kept unless a requirements file asks for another version, or you pass
--upgrade (everything) or --upgrade-package NAME. Each lock file starts with the exact
command that wrote it. pip installs them with --require-hashes (ensure_venv.sh, Dockerfile),
and tests/deploy/test_lock_files.py fails when a lock is out of step with its requirements file.

uv reads the package index from UV_INDEX_URL (default https://pypi.org/simple).
USAGE
}

# The lock files, each from its requirements file and the lock that constrains it (none for the runtime).
LOCKS=(
  "requirements.txt requirements.lock"
  "requirements-local.txt requirements-local.lock requirements.lock"
  "requirements-dev.txt requirements-dev.lock requirements-local.lock"
)

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    return 0
  fi
  local repo_dir line requirements lock constraint
  repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  cd "$repo_dir" # relative paths: the command each lock file records is the one to run here
  # shellcheck source=ensure_venv.sh
  source ./ensure_venv.sh
  ensure_venv "$repo_dir/.venv-test" "$repo_dir/requirements-dev.txt"
  for line in "${LOCKS[@]}"; do
    read -r requirements lock constraint <<<"$line"
    echo "Locking $requirements into $lock ..."
    "$repo_dir/.venv-test/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
      "$requirements" ${constraint:+--constraint "$constraint"} --output-file "$lock" "$@"
  done
}

main "$@"
