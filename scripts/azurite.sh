# shellcheck shell=bash
# Azurite, Microsoft's Azure Storage emulator (the npm package `azurite`), installed where start.sh, the
# tests and .ci/run find it. Sourced by start.sh and .ci/run.
#
#   ensure_azurite DIR     installs azurite@$AZURITE_VERSION into DIR (npm --prefix) unless it is there;
#                          prints the azurite-blob executable; fails with what to install without Node.js
#
# The version is pinned here, once: 3.35 is the newest that runs on Node.js 18 and 20 (3.36 needs 21+).
# It is installed into the project (.azurite/node, gitignored), never globally, so no root is needed and
# every checkout runs the same emulator.

AZURITE_VERSION=3.35.0

azurite_blob_in() {
  printf '%s/node_modules/.bin/azurite-blob' "$1"
}

installed_azurite_version() {
  local package=$1/node_modules/azurite/package.json
  [[ -f "$package" ]] || return 0
  sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$package" | head -n 1
}

ensure_azurite() {
  local directory=$1
  if [[ -x "$(azurite_blob_in "$directory")" && "$(installed_azurite_version "$directory")" == "$AZURITE_VERSION" ]]; then
    azurite_blob_in "$directory"
    return 0
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "ERROR: the local Azure Storage emulator (Azurite) needs Node.js 18 or newer with npm: install it" \
      "(https://nodejs.org, or: sudo apt-get install nodejs npm, or: brew install node), or unset" \
      "PAYLOAD_STORAGE_CONNECTION_STRING to run without payload storage" >&2
    return 1
  fi
  echo "Installing Azurite $AZURITE_VERSION (the Azure Storage emulator) into $directory with npm (once; about a minute) ..." >&2
  mkdir -p "$directory"
  if ! npm install --prefix "$directory" --no-save --no-package-lock --no-audit --no-fund --loglevel error \
    "azurite@$AZURITE_VERSION" >&2; then
    echo "ERROR: npm could not install azurite@$AZURITE_VERSION into $directory; see npm's message above" >&2
    return 1
  fi
  azurite_blob_in "$directory"
}
