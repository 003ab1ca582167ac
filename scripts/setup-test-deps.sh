#!/usr/bin/env bash
# Installs what the tests need beyond the build: rustfmt and clippy. (Peer
# systems for side-by-side benchmarks are not needed by the test suite.)
set -euo pipefail
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy
  else
    echo "setup: rustfmt and clippy are missing and rustup is not available" >&2
    exit 1
  fi
fi
