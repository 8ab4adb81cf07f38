#!/usr/bin/env bash
# Filling a registry: provision against skopeo under a model of a far source (see
# scripts/bench_images.py and BENCHMARKS.md "## Images"). Needs skopeo and docker-registry
# (Debian packages), curl and openssl (else `cryptography` in $PYTHON); everything listens
# on 127.0.0.1. Prints a Markdown table, replaces that section of BENCHMARKS.md and exits 1
# naming each target missed. Extra arguments go to bench_images.py (--no-write,
# --skip-skopeo, --skip-provision, --deadline S, --work DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BIN=${PROVISION_BIN:-${CARGO_TARGET_DIR:-target}/release/provision}
exec "$PYTHON" scripts/bench_images.py --bin "$BIN" "$@"
