#!/usr/bin/env bash
# Cold build times, as `make demo` then `make test` see them on a fresh clone: `cargo build`
# into an empty target directory, then `cargo test --all-targets --no-run` on top of it.
# Reports both wall times and whether the second step compiled any AWS SDK crate again
# (it must not: dev-dependencies are kept from changing the SDK's feature set).
# Usage: scripts/build-times.sh [TARGET_DIR]   (default: a fresh temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-$(mktemp -d)}
export CARGO_TARGET_DIR=$target
log=$(mktemp)
start=$(date +%s)
cargo build 2>&1 | tee "$log" | grep -E '^(error|warning: unused)' || true
mid=$(date +%s)
cargo test --all-targets --no-run 2>"$log.test" || { cat "$log.test"; exit 1; }
end=$(date +%s)
again=$(grep -c 'Compiling aws-sdk\|Compiling aws-smithy\|Compiling aws-config' "$log.test" || true)
echo "cold cargo build:                    $((mid - start)) s"
echo "cargo test --all-targets --no-run:   $((end - mid)) s (AWS crates compiled again: $again)"
echo "crates compiled by the second step:  $(grep -c '^ *Compiling' "$log.test" || true)"
