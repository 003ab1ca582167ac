# Shared settings for the repo's scripts (sourced, not run).
# Build output lives outside the clone, so RocksDB's C++ (about 12 minutes on
# two cores) is compiled once per machine, not once per clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/consensusdb-target}"
# Debian's cargo would otherwise fall back to the slower git index protocol.
export CARGO_REGISTRIES_CRATES_IO_PROTOCOL="${CARGO_REGISTRIES_CRATES_IO_PROTOCOL:-sparse}"
