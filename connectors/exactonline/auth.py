"""Exact Online OAuth2: the authorisation-code set-up, token storage and a refreshing httpx auth.

Quirks this module is built around:

* The token endpoint answers `{access_token, token_type: "bearer", expires_in: "600", refresh_token}`
  — `expires_in` is a *string*. Access tokens live 10 minutes.
* Refresh tokens rotate and are single use: using one kills every older one. Two processes refreshing
  at once leave one of them holding a dead token, so refreshing is serialised by a Redis lock per
  system, and whoever gets the lock re-reads the stored tokens first: if another process refreshed
  meanwhile, it uses those instead of refreshing again.
* Refreshing too early (before ~9 min 30 s) is refused with 401 "Access token not expired": tokens
  are refreshed only when less than `refresh_margin` (30 s) is left, or after the API answered 401.
* Authorisation codes are single use and valid for about 3 minutes.

The token handling itself (the grants, the store, the lock, the refreshing auth) is connectors/tokens.py;
this module names Exact's endpoints, errors and the quirks above. Tokens live in Redis as JSON under one key
per system id, next to the division `current/Me` named. They never appear in logs, reprs or exception
messages. A refresh that reached Exact but whose answer was lost (timeout, crash before the store) cannot
be repaired: the old refresh token is dead, and `koppel connect <system>` must be run again. A 429 from the
token endpoint (Exact's per-minute limits cover it too) spent nothing: it is transient, retried later with
the same refresh token, not a consent to redo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import redis

from connectors import oauth, tokens
from connectors.exactonline.errors import (
    ExactAuthError,
    ExactResponseError,
    ExactUnavailable,
    InvalidState,
    TokenRefreshBusy,
)
from connectors.oauth import STATE_MAX_AGE
from connectors.oauth import sign_state as sign_state  # re-exported: the consent step
from connectors.tokens import TOKEN_TIMEOUT as TOKEN_TIMEOUT
from connectors.tokens import Tokens as Tokens
from gateway import keys

ENDPOINT = tokens.TokenEndpoint(
    title="Exact Online",
    where="Exact Online token endpoint",
    unavailable=ExactUnavailable,
    refused=ExactAuthError,
    malformed=ExactResponseError,
    busy=TokenRefreshBusy,
    early_refusal="not expired",  # 401 "Access token not expired" to a refresh before ~9 min 30 s
)
"""Exact's token endpoint: `expires_in` required (it comes as a string), single-use rotating refresh tokens."""


# -- the consent step ----------------------------------------------------------------------------


def authorize_url(base_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    """Where to send the user's browser: Exact's consent page, which comes back with code and state."""
    return tokens.consent_url(f"{base_url.rstrip('/')}/api/oauth2/auth", client_id, redirect_uri, state)


def verify_state(
    secret: str, state: str, *, max_age: int = STATE_MAX_AGE, clock: Callable[[], float] = time.time
) -> str:
    """connectors.oauth.verify_state, raising the connector's own InvalidState."""
    try:
        return oauth.verify_state(secret, state, max_age=max_age, clock=clock)
    except oauth.InvalidState as exc:
        raise InvalidState(str(exc)) from exc


# -- tokens --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthApp:
    """An app registered in the Exact App Center. The secret comes from the environment, never the file."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str

    @property
    def token_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/api/oauth2/token"


exchange_code = ENDPOINT.exchange
"""Trade the single-use authorisation code of the consent's redirect for the first token pair."""
refresh_tokens = ENDPOINT.refresh
"""Spend a refresh token (it dies, and all older ones) for a new pair; prefer `ExactAuth.refresh` (it locks)."""


class TokenStore(tokens.TokenStore):
    """The token pair of one Exact system in Redis, the lock that serialises refreshes, and the division
    `current/Me` named for this authorisation."""

    def __init__(self, conn: redis.Redis, system_id: str, *, namespace: str = keys.TOKENS) -> None:
        super().__init__(conn, system_id, namespace=namespace)
        self.division_key = f"{self.key}:division"

    def replace(self, tokens: Tokens) -> None:
        """A new authorisation may be for another administration: the remembered division is forgotten."""
        self.save(tokens)
        self.conn.delete(self.division_key)

    def delete(self) -> None:
        self.conn.delete(self.key, self.division_key, self.failed_key)

    def load_division(self) -> int | None:
        """The division `current/Me` named for this authorisation, cached so workers ask Exact only once."""
        raw = self.conn.get(self.division_key)
        return int(raw) if raw is not None and raw.isdigit() else None

    def save_division(self, division: int) -> None:
        self.conn.set(self.division_key, str(division))


def store_authorization(
    http: httpx.Client, app: OAuthApp, conn: redis.Redis, system_id: str, code: str, *,
    clock: Callable[[], float] = time.time,
) -> Tokens:  # fmt: skip
    """Trade the consent's `code` for tokens and store them (forgetting the remembered division)."""
    return ENDPOINT.authorise(http, app, TokenStore(conn, system_id), code, clock=clock)


def complete_authorization(
    http: httpx.Client,
    app: OAuthApp,
    conn: redis.Redis,
    *,
    secret: str,
    state: str,
    code: str,
    clock: Callable[[], float] = time.time,
) -> str:
    """The redirect handler's work: verify `state`, trade `code`, store the tokens. Returns the system id."""
    system_id = verify_state(secret, state, clock=clock)
    store_authorization(http, app, conn, system_id, code, clock=clock)
    return system_id


class ExactAuth(tokens.RefreshingAuth):
    """httpx auth for one Exact system: bearer token from the store, refreshed when less than
    `refresh_margin` (30 s) is left and once on 401, then retried (connectors/tokens.py).

    Safe across threads and processes: refreshing happens under the system's Redis lock (see module
    docstring). A proactive refresh Exact refuses as too early keeps the current token; after a 401 the
    refusal is a TokenRefreshBusy. Synchronous only — it talks to Redis — so use it with `httpx.Client`.
    """

    endpoint = ENDPOINT
    default_margin = 30.0
