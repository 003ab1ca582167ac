#!/usr/bin/env bash
# The side-by-side figures of docs/benchmarks.md: the peer harness
# (shared/bench/peers, by default Redis and PostgreSQL) and ConsensusDB's
# load generator, with the same workload, on this machine, in one session,
# into one results file; then the harness's summariser prints the tables.
#
#   benches/run-figures.sh               # full run: 500,000 events, 10 s reads
#   EVENTS=100000 DURATION=3 benches/run-figures.sh   # a shorter run
#   PEERS="" benches/run-figures.sh      # ConsensusDB only (reuses peer records)
#
# Settings (environment):
#   PEERBENCH    the peer harness [../shared/bench/peers, from the repo root]
#   PEERS        its systems to run ["redis pg"]; empty runs none
#   RESULTS_DIR  where results go, outside the clone [$HOME/.cache/consensusdb-bench]
#   OUT          the results file, appended to [$RESULTS_DIR/results.jsonl];
#                the summary keeps the newest record per system/label/phase/mode
#   EVENTS, DURATION   events per load and seconds per read phase [500000, 10]
#   NICE         priority of the measured processes, as the harness uses ["nice -n -15"]
#
# Needs root (or sudo) to install the peer servers, and runs PostgreSQL as
# the `postgres` user, as the harness does. Takes 20-30 minutes in full;
# run it on an otherwise idle machine (each record's resources.other_cpu_pct
# shows whether something else ran).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

peerbench="$(cd "${PEERBENCH:-../shared/bench/peers}" 2>/dev/null && pwd)" || {
  echo "run-figures: the peer harness is not at ${PEERBENCH:-../shared/bench/peers} (set PEERBENCH)" >&2
  exit 1
}
peers="${PEERS-redis pg}"
results_dir="${RESULTS_DIR:-$HOME/.cache/consensusdb-bench}"
out="${OUT:-$results_dir/results.jsonl}"
events="${EVENTS:-500000}"
duration="${DURATION:-10}"
nice_cmd="${NICE-nice -n -15}"
mkdir -p "$results_dir" "$(dirname "$out")"
log() { echo "[$(date +%T)] run-figures: $*" >&2; }

# 1. The peer servers (only what is missing), and protoc for the harness's
#    etcd client crate.
install_peers() {
  local need=()
  case " $peers " in *" redis "*) command -v redis-server >/dev/null 2>&1 || need+=(redis-server) ;; esac
  case " $peers " in *" pg "*) [ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql) ;; esac
  command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  if ((${#need[@]})); then
    local sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    log "installing ${need[*]}"
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
}
install_peers

# 2. The peer harness, writing into our results file.
if [ -n "$peers" ]; then
  log "peer harness: $peers ($events events, ${duration} s reads) -> $out"
  # shellcheck disable=SC2086  # $peers is a list of system names
  OUT="$out" EVENTS="$events" DURATION="$duration" NICE="$nice_cmd" "$peerbench/run_all.sh" $peers
fi

# 3. ConsensusDB: build, then the full load-generator run (it starts its own node).
source scripts/env.sh
"$repo/scripts/setup-build-deps.sh"
log "building the node and the load generator"
cargo build --release --workspace --bins
log "loadgen ($events events, ${duration} s reads) -> $out"
# shellcheck disable=SC2086  # $nice_cmd is a command and its arguments
$nice_cmd "$CARGO_TARGET_DIR/release/loadgen" --events "$events" --duration "$duration" --out "$out" \
  >/dev/null

# 4. The tables, from the harness's summariser (it takes the file as its argument).
summary="$results_dir/summary.md"
python3 "$peerbench/summarize.py" "$out" | tee "$summary"
log "tables saved in $summary; every record is in $out"
