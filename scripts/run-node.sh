#!/usr/bin/env bash
# Installs build dependencies, builds the release binary and runs one node.
# With no arguments it serves gRPC on 127.0.0.1:4482 with data in ./data.
# Any arguments go to `consensusdb serve` (try --help).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup-build-deps.sh"
source "$here/env.sh"
# No cd: ./data is relative to where the script is run from.
cargo build --release --locked --manifest-path "$here/../Cargo.toml" --bin consensusdb
exec "$CARGO_TARGET_DIR/release/consensusdb" serve "$@"
