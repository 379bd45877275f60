"""Source handlers, one module per webhook kind: verify, answer handshakes, split into events."""

from __future__ import annotations

from handlers.base import Handler, Incoming, Outcome

__all__ = ["HANDLERS", "Handler", "Incoming", "Outcome", "handler_for"]


def _registry() -> dict[str, Handler]:
    from handlers import businesscentral, exactonline, squarespace, woocommerce

    return {
        "woocommerce": woocommerce.handle,
        "squarespace": squarespace.handle,
        "businesscentral": businesscentral.handle,
        "exactonline": exactonline.handle,
    }


HANDLERS: dict[str, Handler] = {}


def handler_for(kind: str) -> Handler:
    if not HANDLERS:
        HANDLERS.update(_registry())
    return HANDLERS[kind]
