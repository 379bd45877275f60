"""OAuth2 authorization-code consent for any connector that uses it (Exact Online and Asperion today).

    koppel connect <system-id>               prints the system's consent URL
    GET /oauth/{system-id}/callback          where the system sends the browser back; stores the tokens

A connector that uses the flow names a `CodeFlow` subclass in its `Connector(oauth=...)`. The
`state` Koppel sends is signed (itsdangerous, time-limited) with the gateway's admin token and names
the system, so a callback only completes a consent this Koppel started, for the system it was started
for. Tokens go to Redis (connectors/tokens.py, which also refreshes them), never to logs or answers.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from gateway.config import System
from gateway.errors import PermanentError

if TYPE_CHECKING:
    from connectors.contract import Context

STATE_MAX_AGE = 600
_STATE_SALT = "koppel.exactonline.oauth-state"

__all__ = ["STATE_MAX_AGE", "CodeFlow", "InvalidState", "callback_path", "sign_state", "verify_state"]


class InvalidState(PermanentError):
    """The OAuth `state` parameter is not one Koppel signed, or it is too old."""


def callback_path(system_id: str) -> str:
    return f"/oauth/{system_id}/callback"


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


def _serializer(secret: str, clock: Callable[[], float]) -> URLSafeTimedSerializer:
    class ClockedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return URLSafeTimedSerializer(secret, salt=_STATE_SALT, signer=ClockedSigner)


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
