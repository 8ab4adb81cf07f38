#!/usr/bin/env bash
# End-to-end timings of the release binary against a local moto server (k3s, 2 and 5
# nodes): plan on an empty env, apply, no-op re-apply, plan, destroy; wall time and peak
# RSS of each command. Prints a Markdown table (copied into BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
MOTO_SERVER=${MOTO_SERVER:-.venv/bin/moto_server}
exec "$PYTHON" scripts/bench.py --moto "$MOTO_SERVER" --bin target/release/provision "$@"
