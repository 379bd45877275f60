"""OAuth2 authorization-code consent for any connector that uses it (Exact Online and Asperion today).

    koppel connect <system-id>               prints the gateway's start URL (a one-use ticket)
    GET /oauth/{system-id}/start?ticket=…    binds the consent to the browser, sends it to the system
    GET /oauth/{system-id}/callback          where the system sends the browser back; stores the tokens

A connector that uses the flow names a `CodeFlow` subclass in its `Connector(oauth=...)`. The
`state` Koppel sends is signed (itsdangerous, time-limited) with the gateway's admin token and names
the system, so a callback only completes a consent this Koppel started, for the system it was started
for; the gateway also makes it single-use and binds it to the browser that started it (gateway/oauth.py).
A start `ticket` is signed the same way under its own salt and lives `TICKET_MAX_AGE` seconds. Tokens go
to Redis (connectors/tokens.py, which also refreshes them), never to logs or answers.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from gateway.config import System
from gateway.errors import PermanentError

if TYPE_CHECKING:
    from connectors.contract import Context

STATE_MAX_AGE = 600
TICKET_MAX_AGE = 300
_STATE_SALT = "koppel.exactonline.oauth-state"
_TICKET_SALT = "koppel.oauth-start-ticket"

__all__ = [
    "STATE_MAX_AGE", "TICKET_MAX_AGE", "CodeFlow", "InvalidState", "Ticket", "callback_path", "read_ticket",
    "sign_state", "sign_ticket", "start_path", "verify_state",
]  # fmt: skip


class InvalidState(PermanentError):
    """The OAuth `state` parameter is not one Koppel signed, or it is too old."""


def callback_path(system_id: str) -> str:
    return f"/oauth/{system_id}/callback"


def start_path(system_id: str) -> str:
    return f"/oauth/{system_id}/start"


class CodeFlow:
    """A system's authorization-code consent: where to send the browser, and how to store the outcome."""

    def authorize_url(self, system: System, state: str) -> str:
        raise NotImplementedError

    def redirect_uri(self, system: System) -> str:
        """The callback URL registered for the app at the system (must end in `callback_path`)."""
        raise NotImplementedError

    def complete(self, system: System, code: str, http: httpx.Client, context: Context) -> None:
        """Trade `code` for tokens and store them."""
        raise NotImplementedError


def _serializer(secret: str, clock: Callable[[], float], salt: str = _STATE_SALT) -> URLSafeTimedSerializer:
    class ClockedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return URLSafeTimedSerializer(secret, salt=salt, signer=ClockedSigner)


def sign_state(secret: str, system_id: str, *, clock: Callable[[], float] = time.time) -> str:
    """A `state` that names the system and that only Koppel (holding `secret`) could have made."""
    return str(_serializer(secret, clock).dumps({"system": system_id, "nonce": secrets.token_urlsafe(8)}))


def verify_state(
    secret: str, state: str, *, max_age: int = STATE_MAX_AGE, clock: Callable[[], float] = time.time
) -> str:
    """The system id carried by a `state` Koppel signed; InvalidState when tampered with or expired."""
    try:
        data = _serializer(secret, clock).loads(state, max_age=max_age)
    except SignatureExpired:
        raise InvalidState(f"OAuth state expired (older than {max_age} s): start the authorisation again") from None
    except BadSignature:
        raise InvalidState("OAuth state has a bad signature: it was not issued by this Koppel") from None
    system = data.get("system") if isinstance(data, dict) else None
    if not isinstance(system, str) or not system:
        raise InvalidState("OAuth state carries no system id")
    return system


@dataclass(frozen=True)
class Ticket:
    """A start ticket's content: the system to connect and the ticket's id (its one use is recorded by id)."""

    system: str
    id: str


def sign_ticket(secret: str, system_id: str, *, clock: Callable[[], float] = time.time) -> str:
    """A one-use, short-lived ticket that lets a browser start the consent of `system_id` at the gateway."""
    return str(_serializer(secret, clock, _TICKET_SALT).dumps({"system": system_id, "id": secrets.token_urlsafe(16)}))


def read_ticket(
    secret: str, ticket: str, *, max_age: int = TICKET_MAX_AGE, clock: Callable[[], float] = time.time
) -> Ticket:
    """The content of a ticket Koppel signed; InvalidState when tampered with or expired (its one use is
    the caller's to record)."""
    try:
        data = _serializer(secret, clock, _TICKET_SALT).loads(ticket, max_age=max_age)
    except SignatureExpired:
        raise InvalidState(f"the start link expired (older than {max_age} s): run koppel connect again") from None
    except BadSignature:
        raise InvalidState("the start link's ticket has a bad signature: it was not issued by this Koppel") from None
    system, ticket_id = (data.get("system"), data.get("id")) if isinstance(data, dict) else (None, None)
    if not isinstance(system, str) or not system or not isinstance(ticket_id, str) or not ticket_id:
        raise InvalidState("the start link's ticket names no system")
    return Ticket(system, ticket_id)
