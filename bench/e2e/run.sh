#!/usr/bin/env bash
# bench/e2e: orders through gateway, queue, workers and the Exact sandbox, beside bench/ingest's no-op ceiling.
#   [PYTHON=…] bench/e2e/run.sh [--pair woocommerce-exactonline] [--workers 1] [--orders 500] [--warmup 200] [--batches 1] [--rate 0] [--help]
# Needs wrk (bench/ingest/run.sh installs it), redis-server and the project's .venv (./run.sh creates them).
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v wrk >/dev/null || { echo "bench/e2e: wrk is missing; bench/ingest/run.sh --help installs it" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "bench/e2e: redis-server is missing; run ./run.sh once" >&2; exit 1; }
python="${PYTHON:-.venv/bin/python}"  # PYTHON=/path/to/python for another venv (e.g. in a git worktree)
[ -x "$python" ] || { echo "bench/e2e: no $python; run ./run.sh once to create .venv" >&2; exit 1; }

exec "$python" -m bench.e2e "$@"
