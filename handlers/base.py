"""The contract every source handler fulfils.

A handler is a pure function of the raw request and the endpoint's config: it verifies the
signature over the raw bytes (constant time), answers handshakes, and splits the body into
`Event`s. It does no I/O, so it is tested alone and property-tested over arbitrary input.
It raises `gateway.errors.WebhookRejected` subclasses for bad input, never anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.config import Endpoint
from gateway.envelope import Event


@dataclass(frozen=True, slots=True)
class Incoming:
    """A webhook request as received: header names lower-cased, body untouched."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    secrets: tuple[str, ...] = ()
    """Secrets the system issued for this endpoint, as Koppel stored them (connectors/issued.py; only for a
    connector with `issued_secrets`): each verifies a request as the endpoint's configured secret does."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a request.

    `events` are queued (possibly none, e.g. for a handshake or ping); once they are stored the
    receiver answers `status` with `body` (JSON summary when `body` is None).
    """

    events: list[Event] = field(default_factory=list)
    status: int = 202
    body: str | None = None
    media_type: str = "text/plain; charset=utf-8"


Handler = Callable[[Incoming, Endpoint], Outcome]
