#!/usr/bin/env bash
# The whole test suite: installs build and test dependencies, checks
# formatting and lints, then runs every test in the release profile (the
# profile the node and benches use, so RocksDB is compiled once).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup-build-deps.sh"
"$here/setup-test-deps.sh"
source "$here/env.sh"
cd "$here/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --locked --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --release --locked --workspace --all-targets --no-fail-fast
echo "== doc tests"
cargo test --release --locked --workspace --doc
