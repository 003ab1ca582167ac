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

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --locked --workspace --all-targets -- -D warnings
status=0
echo "== doc tests"
cargo test --release --locked --workspace --doc 2>&1 | tee -a "$log" || status=1
echo "== unit, property and integration tests"
cargo test --release --locked --workspace --all-targets --no-fail-fast 2>&1 | tee -a "$log" || status=1

# One closing line for the whole run (each test binary prints its own),
# printed whether or not something failed.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
