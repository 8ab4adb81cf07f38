#!/usr/bin/env bash
# The end-to-end benchmark (see scripts/bench.py and BENCHMARKS.md): the release binary
# against moto behind the proxy's latency model of AWS, for k3s, rke2 and rke, `apply --yes`
# timed start to exit against the critical path of the benchmark's own dependency model of
# AWS, then the k3s 3/5/9-node table. Prints Markdown tables and exits 1 when a target is
# missed. Extra arguments go to bench.py (--runs N, --topologies k3s, --scale '',
# --json FILE, --poll-seconds S, --apply-args '...').
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
MOTO_SERVER=${MOTO_SERVER:-.venv/bin/moto_server}
BIN=${PROVISION_BIN:-target/release/provision}
exec "$PYTHON" scripts/bench.py --moto "$MOTO_SERVER" --bin "$BIN" "$@"
