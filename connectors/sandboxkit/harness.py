"""How the contract tests (tests/contract/) drive a connector against its own sandbox.

A connector names its harness in `Connector(sandbox="connectors.<kind>.sandbox:HARNESS")`. The
contract suite runs every registered connector through the same tests with it: the API client
against the sandbox (credentials refused, many records looked up, an unknown record, a 429 storm),
writes idempotent on replay through the four flows, and the sandbox's webhooks verified by the
connector's own handler. What a harness cannot do (a sandbox that sends no webhooks) is None, and
the tests that need it say so when skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import redis

SystemEntry = tuple[dict[str, Any], dict[str, str]]
"""A `[[systems]]` entry (with `env:NAME` credentials) and the environment those names resolve in."""


def _connected(base_url: str, http: httpx.Client, connection: redis.Redis, system_id: str) -> None:
    """Systems whose credentials are in the config need no consent."""


def _space_appended(body: bytes) -> bytes:
    """A forgery of a body signed whole."""
    return body + b" "


@dataclass(frozen=True)
class Harness:
    """`app()`: a fresh sandbox (an ASGI app). `system(base_url, valid)`: the `[[systems]]` entry of a
    system at the sandbox, with refused credentials when `valid` is False. `connect`: authorise Koppel
    at the sandbox (OAuth consent), when the system needs it. `seed_items(base_url, http, skus)`: make
    these SKUs exist as the target's items. `missing_id`: an id of the target's shape that no record
    has. `webhooks(base_url, http, delivery_url, secret)`: make the sandbox send signed webhooks to
    `delivery_url`; returns how many deliveries to expect. `forge(body)`: a delivered body with a part its
    signature covers changed, which the handler must refuse (a space appended, unless only part of the body
    is signed)."""

    app: Callable[[], Any]
    system: Callable[[str, bool], SystemEntry]
    missing_id: Callable[[], str]
    connect: Callable[[str, httpx.Client, redis.Redis, str], None] = _connected
    seed_items: Callable[[str, httpx.Client, list[str]], None] | None = None
    webhooks: Callable[[str, httpx.Client, str, str], int] | None = None
    forge: Callable[[bytes], bytes] = _space_appended


__all__ = ["Harness", "SystemEntry"]
