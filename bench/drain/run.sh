#!/usr/bin/env bash
# bench/drain: a batch of orders delivered into the inbox with no worker running, then drained by 1 and 2 workers,
# beside an RQ SimpleWorker draining no-op jobs (pinned to one core and unpinned) in the same run.
#   [PYTHON=…] bench/drain/run.sh [--orders 1000] [--warmup 50] [--help]
# Needs redis-server and the project's .venv (./run.sh creates them).
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v redis-server >/dev/null || { echo "bench/drain: redis-server is missing; run ./run.sh once" >&2; exit 1; }
python="${PYTHON:-.venv/bin/python}"  # PYTHON=/path/to/python for another venv (e.g. in a git worktree)
[ -x "$python" ] || { echo "bench/drain: no $python; run ./run.sh once to create .venv" >&2; exit 1; }

exec "$python" -m bench.drain "$@"
