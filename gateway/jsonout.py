"""`--json` for the koppel commands that print tables and lists: one JSON document on stdout and nothing
else there (log and progress lines stay on stderr). Times are ISO 8601 in UTC. The exit code is the
command's own; a run that fails (exit code not 0) prints a document with an `error` sentence too, so a
script reads stdout the same way either way. docs/cli-json.md lists each command's keys.

`main` in gateway/cli.py calls `start` with the parsed arguments; commands call `emit` once, and the
CLI's failure path calls `error`, which writes the `{"error": ...}` document when none was written yet.
"""

from __future__ import annotations

import argparse
import json
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.redisserver import redact_urls

HELP = "print one JSON document on stdout, for scripts (docs/cli-json.md)"


@dataclass
class _Run:
    wanted: bool
    sent: bool = False


_run: ContextVar[_Run | None] = ContextVar("koppel_json_run", default=None)


def _current() -> _Run:
    run = _run.get()
    if run is None:  # a command called without `main` (tests, scripts): plain output
        run = _Run(wanted=False)
        _run.set(run)
    return run


def add_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `--json` option, worded the same on every command."""
    parser.add_argument("--json", action="store_true", help=HELP)
    return parser


def start(args: argparse.Namespace) -> None:
    """A new command run: JSON when its arguments asked for it (`--json`)."""
    _run.set(_Run(wanted=bool(getattr(args, "json", False))))


def iso(epoch: float) -> str:
    """Epoch seconds as ISO 8601 in UTC (as the envelope's `received_at`)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def emit(document: dict[str, Any] | list[Any]) -> None:
    """Print the command's one document on stdout."""
    run = _current()
    if run.sent:
        raise RuntimeError("a command prints one JSON document")
    run.sent = True
    print(json.dumps(document, indent=2))


def error(message: str, **extra: Any) -> None:
    """When JSON was asked for and nothing was printed yet: `{"error": message, ...extra}` (URL passwords
    masked, as on stderr)."""
    run = _current()
    if run.wanted and not run.sent:
        emit({"error": redact_urls(message), **extra})
