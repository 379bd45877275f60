#!/usr/bin/env bash
# bench/chaos: faults and hostile input against the real stack (loopback only), a table per experiment.
#   [PYTHON=…] bench/chaos/run.sh [--short] [--only redis,kills,…] [--expect-fixed NAME,…|none] [--help]
# Needs redis-server and the project's .venv (./run.sh creates them).
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v redis-server >/dev/null || { echo "bench/chaos: redis-server is missing; run ./run.sh once" >&2; exit 1; }
python="${PYTHON:-.venv/bin/python}"  # PYTHON=/path/to/python for another venv (e.g. in a git worktree)
[ -x "$python" ] || { echo "bench/chaos: no $python; run ./run.sh once to create .venv" >&2; exit 1; }

exec "$python" -m bench.chaos "$@"
