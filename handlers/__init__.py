"""Source handlers, one module per webhook kind: verify, answer handshakes, split into events.

A connector names its handler (`Connector.handler = "handlers.<kind>:handle"`); `handler_for` finds
it through the connectors' registry, so a new kind needs no edit here.
"""

from __future__ import annotations

from connectors import registry
from handlers.base import Handler, Incoming, Outcome

__all__ = ["Handler", "Incoming", "Outcome", "handler_for"]


def handler_for(kind: str) -> Handler:
    """The webhook handler of a connector kind; KeyError when the kind has none."""
    path = registry.get(kind).handler
    if path is None:
        raise KeyError(f"{kind} sends no webhooks Koppel can receive")
    handler: Handler = registry.resolve(path)
    return handler
