#!/usr/bin/env bash
# Sourced by start.sh, test.sh and the deploy scripts: keeps a virtual environment in step with a
# requirements file.
#
#   ensure_venv VENV_DIR REQUIREMENTS_FILE
#
# Creates VENV_DIR with Python 3.11+ when missing and installs REQUIREMENTS_FILE whenever it, its lock
# file or a file it includes with -r changed since the last install, saying so in one line; a second
# run costs nothing. A requirements file with a lock file next to it (requirements.txt ->
# requirements.lock, written by ./lock-requirements.sh) is installed from the lock, with
# --require-hashes: every package pinned, every download checked against its sha256. A digest per
# requirements file is kept in VENV_DIR, for the file and for every file it includes (installed with
# it: the locks pin the included files' packages at the same versions), so that start.sh's
# requirements-local.txt also satisfies the deploy scripts' requirements.txt. The interpreter used to
# create the environment is $PYTHON if set, else the newest python3.1x found on PATH.

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "ERROR: Python 3.11 or newer is needed; install it or set PYTHON=/path/to/python3.11" >&2
  return 1
}

# The lock file of a requirements file (./lock-requirements.sh writes it): requirements-dev.txt -> requirements-dev.lock.
lock_file() {
  printf '%s.lock' "${1%.txt}"
}

# The file, its lock and every file it includes with -r, so a change to any of them means a new install.
requirements_text() {
  local file=$1 include
  cat "$file"
  [[ ! -f "$(lock_file "$file")" ]] || cat "$(lock_file "$file")"
  while read -r include; do
    requirements_text "$(dirname "$file")/$include"
  done < <(included_files "$file")
}

# The files a requirements file includes with -r, directly.
included_files() {
  sed -n 's/^-r[[:space:]]*//p' "$1"
}

# Record that REQUIREMENTS (and, recursively, what it includes) is installed in VENV_DIR.
stamp_installed() {
  local venv_dir=$1 requirements=$2 include
  requirements_digest "$requirements" >"$venv_dir/.installed-$(basename "$requirements").sha256"
  while read -r include; do
    stamp_installed "$venv_dir" "$(dirname "$requirements")/$include"
  done < <(included_files "$requirements")
}

requirements_digest() {
  requirements_text "$1" | sha256sum | cut -d' ' -f1
}

ensure_venv() {
  local venv_dir=$1 requirements=$2
  local stamp python
  stamp="$venv_dir/.installed-$(basename "$requirements").sha256"
  if [[ -x "$venv_dir/bin/python" && -f "$stamp" && "$(<"$stamp")" == "$(requirements_digest "$requirements")" ]]; then
    return 0
  fi
  if [[ ! -x "$venv_dir/bin/python" ]]; then
    python=$(find_python) || return 1
    echo "Creating virtual environment $venv_dir with $python and installing $requirements into it (the first run takes a minute) ..." >&2
    "$python" -m venv "$venv_dir" || return 1
  else
    echo "Installing $requirements into $venv_dir: it changed since the last install ..." >&2
  fi
  local install=(-r "$requirements") lock
  lock=$(lock_file "$requirements")
  if [[ -f "$lock" ]]; then
    install=(--require-hashes -r "$lock")
  fi
  if ! "$venv_dir/bin/python" -m pip install --disable-pip-version-check --quiet "${install[@]}" >&2; then
    echo "ERROR: pip could not install ${install[*]: -1} into $venv_dir; see pip's message above" >&2
    return 1
  fi
  stamp_installed "$venv_dir" "$requirements"
}
