#!/usr/bin/env bash
# Installs what the tests need beyond the build: rustfmt and clippy, a headless
# browser (Debian's chromium, for the web UI tests) and schemathesis (the HTTP
# API fuzzer). The browser and the fuzzer are test-only tools: running a node
# never installs them. (Peer systems for side-by-side benchmarks are not needed
# by the test suite.) Every step is skipped when already done.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
venv="${CONSENSUSDB_VENV:-$HOME/.cache/consensusdb-venv}"

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy
  else
    echo "setup: rustfmt and clippy are missing and rustup is not available" >&2
    exit 1
  fi
fi

# apt_install PKG...: Debian packages, via sudo unless already root (env passes
# DEBIAN_FRONTEND through sudo's env_reset); apt-get update only on failure.
apt_install() {
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
  if [ "$(id -u)" -ne 0 ]; then apt=(sudo "${apt[@]}"); fi
  if ! "${apt[@]}" install -y --no-install-recommends "$@"; then
    "${apt[@]}" update
    "${apt[@]}" install -y --no-install-recommends "$@"
  fi
}

if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium and fonts-dejavu-core (apt)"
  apt_install chromium fonts-dejavu-core
fi

if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  echo "setup: installing schemathesis==$SCHEMATHESIS_VERSION into $venv"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "setup: installing python3-venv (apt)"
    apt_install python3-venv
  fi
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
