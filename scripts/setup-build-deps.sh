#!/usr/bin/env bash
# Installs the system packages needed to *build* ConsensusDB on Debian/Ubuntu.
# RocksDB's -sys crate runs bindgen, which needs libclang (libclang1 alone lacks
# the builtin headers such as stdbool.h, so the -dev package is required).
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v c++ >/dev/null 2>&1 || need+=(g++)
# libclang-dev ships libclang.so plus clang's resource headers.
if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  need+=(libclang-dev)
fi
if ! ls /usr/lib/llvm-*/lib/clang/*/include/stdbool.h >/dev/null 2>&1; then
  need+=(libclang-dev)
fi

if ((${#need[@]})); then
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  echo "setup: installing ${need[*]}" >&2
  $sudo_cmd apt-get update -qq
  # Through env, so sudo's environment reset cannot drop it.
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# The workspace uses edition 2024 and needs Rust 1.89 or newer; Debian's
# packaged rustc is older, so point to rustup rather than fail obscurely.
required="1.89"
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust $required or newer with rustup (https://rustup.rs) and re-run" >&2
  exit 1
fi
have="$(rustc --version | awk '{print $2}')"
if [ "$(printf '%s\n%s\n' "$required" "$have" | sort -V | head -n1)" != "$required" ]; then
  echo "setup: Rust $have is too old; ConsensusDB needs $required or newer (rustup update stable)" >&2
  exit 1
fi
