#!/usr/bin/env bash
# bench/ingest: Koppel's webhook ingest against a no-op Starlette route, same uvicorn, loaded by wrk.
#   bench/ingest/run.sh [-t 1] [-c 64] [-d 10] [--warmup 2] [--profile] [--rate 2000] [--help]
# Installs wrk (Debian package) when missing; needs the project's .venv (./run.sh creates it).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "bench/ingest: need root (or sudo) to apt-get install wrk" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "bench/ingest: installing wrk with apt-get" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
command -v redis-server >/dev/null || { echo "bench/ingest: redis-server is missing; run ./run.sh once" >&2; exit 1; }
[ -x .venv/bin/python ] || { echo "bench/ingest: no .venv; run ./run.sh once to create it" >&2; exit 1; }

exec .venv/bin/python -m bench.ingest.run "$@"
