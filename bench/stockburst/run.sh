#!/usr/bin/env bash
# bench/stockburst: WooCommerce API calls per product for a burst of stock changes, one event at a time beside the
# same burst through the flows' batch_function, and end to end (Exact poller, inbox, pump, worker), in one run; and
# a burst of products new to the shop (`--creations`), created one by one beside created in batches.
#   [PYTHON=…] bench/stockburst/run.sh [--products 250] [--variable 10] [--group 250] [--through direct,workers]
#                                      [--creations 250]
# Needs redis-server and the project's .venv (./run.sh creates them).
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || { echo "bench/stockburst: no $python; run ./run.sh once to create .venv" >&2; exit 1; }
exec "$python" -m bench.stockburst "$@"
