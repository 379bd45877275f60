"""Flows: what happens to an event for one integration, per (flow, target system kind).

A flow function takes the integration, the envelope and the worker runtime, does its work
idempotently (lookup on a stable key before every write) and returns a small summary, no payload
data: `outcome` (created, updated, skipped), and where known `number` (the source's record number),
`target_id`, `calls` (target API calls) and `reason` — the fields of its activity log entry. It raises
`TransientError` to be retried or `PermanentError` to fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.config import Integration
from gateway.envelope import Envelope
from workers.runtime import Runtime

FlowFunc = Callable[[Integration, Envelope, Runtime], dict[str, Any]]

_FLOWS: dict[tuple[str, str], FlowFunc] = {}


def register(flow: str, target_kind: str) -> Callable[[FlowFunc], FlowFunc]:
    def decorate(func: FlowFunc) -> FlowFunc:
        _FLOWS[(flow, target_kind)] = func
        return func

    return decorate


def flow_for(flow: str, target_kind: str) -> FlowFunc | None:
    if not _FLOWS:
        _load_builtin()
    return _FLOWS.get((flow, target_kind))


def _load_builtin() -> None:
    """Import the built-in flow modules (they register themselves)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
