#!/usr/bin/env bash
# bench/pair: the main job (`koppel demo`) measured — Exact API calls by endpoint, per order, and the run's
# wall time beside the least time Exact's 60-calls-a-minute budget allows for those calls.
#   [PYTHON=…] bench/pair/run.sh [--orders 25] [--runs 1] [--help]
# Needs redis-server and the project's .venv (./run.sh creates them).
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || { echo "bench/pair: no $python; run ./run.sh once to create .venv" >&2; exit 1; }
exec "$python" -m bench.pair "$@"
