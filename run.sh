#!/usr/bin/env bash
# Koppel quick start.
#   ./run.sh          run Koppel's main job (the demo) on the embedded default; ./run.sh --orders 50
#   ./run.sh test     run the whole test suite (installs Debian's chromium and chromium-driver for the
#                     console's browser tests, tests/test_console_browser.py, and redis-sentinel for
#                     tests/test_sentinel.py)
#   ./run.sh <cmd>    any other `koppel` command, e.g. ./run.sh serve, ./run.sh config check
# Installs what it needs on first use: python3-venv and redis-server (Debian), then a .venv.
set -euo pipefail
# Koppel runs from the repository; relative paths the user gives (--config, $KOPPEL_CONFIG, --input,
# --data-dir) resolve from where they called run.sh (see gateway/cli.py `_from_caller`).
export KOPPEL_CALLER_DIR="$PWD"
export KOPPEL_LAUNCHER="$0"  # the commands Koppel prints for the user to run (koppel init) start with it
cd "$(dirname "$0")"

say() { printf 'run.sh: %s\n' "$*" >&2; }

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { say "need root (or sudo) to apt-get install $*"; exit 1; }
    sudo="sudo"
  fi
  say "installing $* with apt-get"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Koppel needs Python 3.11 or newer ($PY is $("$PY" --version 2>&1 || echo missing))"; exit 1
fi
# The embedded default Redis is Debian's redis-server, run as a supervised child process.
command -v redis-server >/dev/null || apt_install redis-server

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$PY" -m venv .venv; }
fi
stamp=.venv/.koppel-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Koppel and its dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  echo "$want" > "$stamp"
fi

browser_install() {
  # The console's browser tests drive Debian's headless Chromium through its chromedriver (selenium never
  # downloads a browser). Installed here, so they run, never skip, under `./run.sh test` and so in CI.
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then apt_install chromium chromium-driver; fi
  export KOPPEL_BROWSER_REQUIRED=1
}

sentinel_install() {
  # tests/test_sentinel.py runs a Redis primary, replicas and three Redis Sentinels (Debian's redis-sentinel).
  command -v redis-sentinel >/dev/null || apt_install redis-sentinel
}

case "${1:-demo}" in
  test) shift; unset KOPPEL_CALLER_DIR; browser_install; sentinel_install; exec .venv/bin/python -m pytest "$@" ;;
  demo) [ $# -gt 0 ] && shift; exec .venv/bin/koppel demo "$@" ;;
  -*) exec .venv/bin/koppel demo "$@" ;;  # ./run.sh --orders 50: options of the main job
  *) exec .venv/bin/koppel "$@" ;;
esac
