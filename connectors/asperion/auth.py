"""Asperion OAuth2: the authorization-code consent, token storage and a refreshing httpx auth.

Asperion's identity server (`https://identity.asperion.nl`; sandbox `https://identity-sandbox.asperion.nl`)
runs the OAuth2 authorization-code flow [D: help.asperion.nl/api.aspx]. Unverified [U], built as the
usual OpenID Connect server answers (IdentityServer's conventions) and kept in this module only:

* the endpoints `{identity}/connect/authorize` and `{identity}/connect/token`;
* the scope `api offline_access` (a refresh token needs `offline_access`): a setting (`scope`);
* the client authenticates with `client_id`/`client_secret` form fields;
* the token answer `{access_token, token_type: "Bearer", expires_in: 3600, refresh_token}`, `expires_in` a
  number (a string is read too), and refresh tokens that rotate (single use: the newest is kept).

Refreshing is serialised per system by a Redis lock and re-reads the stored tokens under it, so two
workers never spend one refresh token twice. A token is refreshed `REFRESH_MARGIN` seconds before it
expires, and once more when the API answers 401 to it. Tokens live in Redis (`koppel:exact:tokens:{system}`,
the OAuth token namespace) and never appear in logs, reprs or messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
import redis
from redis.exceptions import LockError

from connectors.asperion.errors import AsperionAuthError, AsperionResponseError, AsperionUnavailable
from gateway import keys

log = logging.getLogger(__name__)

IDENTITY_URL = "https://identity.asperion.nl"
SANDBOX_IDENTITY_URL = "https://identity-sandbox.asperion.nl"
DEFAULT_SCOPE = "api offline_access"
AUTHORIZE_PATH = "/connect/authorize"
TOKEN_PATH = "/connect/token"  # noqa: S105 - a path, not a secret
TOKEN_TIMEOUT = 20.0
REFRESH_MARGIN = 60.0
AUTH_RETRY = "koppel_asperion_auth_retry"
"""The request extension set when a request was sent again after a refresh (the kit counts it)."""

__all__ = [
    "AUTH_RETRY",
    "AsperionAuth",
    "OAuthApp",
    "TokenStore",
    "Tokens",
    "authorize_url",
    "exchange_code",
    "refresh_tokens",
    "store_authorization",
]


@dataclass(frozen=True)
class OAuthApp:
    """The app Asperion's API support registered (its client id on request); the secret from the environment."""

    identity_url: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scope: str = DEFAULT_SCOPE

    @property
    def token_url(self) -> str:
        return self.identity_url.rstrip("/") + TOKEN_PATH


def authorize_url(app: OAuthApp, state: str) -> str:
    """Where the user's browser goes to log in to Asperion and approve; it comes back with code and state."""
    query = urlencode({"client_id": app.client_id, "redirect_uri": app.redirect_uri, "response_type": "code",
                       "scope": app.scope, "state": state})  # fmt: skip
    return f"{app.identity_url.rstrip('/')}{AUTHORIZE_PATH}?{query}"


@dataclass(frozen=True)
class Tokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    """Epoch seconds at which the access token stops working."""

    def seconds_left(self, now: float) -> float:
        return self.expires_at - now

    def to_json(self) -> str:
        return json.dumps({"access_token": self.access_token, "refresh_token": self.refresh_token,
                           "expires_at": self.expires_at, "kind": "asperion"})  # fmt: skip

    @classmethod
    def from_json(cls, raw: str | bytes) -> Tokens:
        data = json.loads(raw)
        return cls(str(data["access_token"]), str(data["refresh_token"]), float(data["expires_at"]))


def _token_request(http: httpx.Client, app: OAuthApp, form: dict[str, str], clock: Callable[[], float]) -> Tokens:
    grant = form["grant_type"]
    form = {**form, "client_id": app.client_id, "client_secret": app.client_secret}
    try:
        response = http.post(app.token_url, data=form, headers={"Accept": "application/json"}, timeout=TOKEN_TIMEOUT)
    except httpx.TransportError as exc:
        name = type(exc).__name__
        raise AsperionUnavailable(f"Asperion identity server unreachable ({name}) during {grant}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise AsperionUnavailable(f"Asperion identity server answered {response.status_code} to {grant}",
                                  status=response.status_code)  # fmt: skip
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        error = re.sub(r"[^a-z_]", "", str(body.get("error", "")))[:40] if isinstance(body, dict) else ""
        raise AsperionAuthError(
            f"Asperion refused the {grant} grant ({response.status_code} {error or 'error'}): "
            "run `koppel connect` for the Asperion system again"
        )
    try:
        access, refresh = str(body["access_token"]), str(body["refresh_token"])
        expires_in = float(str(body.get("expires_in", 3600)))
    except (KeyError, TypeError, ValueError):
        raise AsperionResponseError(
            f"Asperion's token answer to {grant} lacks access_token/refresh_token (is offline_access in the scope?)"
        ) from None
    return Tokens(access, refresh, clock() + expires_in)


def exchange_code(http: httpx.Client, app: OAuthApp, code: str, *, clock: Callable[[], float] = time.time) -> Tokens:
    """Trade the single-use code of the consent's redirect for the first token pair."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": app.redirect_uri}
    return _token_request(http, app, form, clock)


def refresh_tokens(
    http: httpx.Client, app: OAuthApp, refresh_token: str, *, clock: Callable[[], float] = time.time
) -> Tokens:
    """Spend a refresh token for a new pair (prefer `AsperionAuth.refresh`, which holds the lock)."""
    return _token_request(http, app, {"grant_type": "refresh_token", "refresh_token": refresh_token}, clock)


class TokenStore:
    """The token pair of one Asperion system in Redis, and the lock that serialises its refreshes."""

    def __init__(self, conn: redis.Redis, system_id: str) -> None:
        self.conn = conn
        self.system_id = system_id
        self.key = f"{keys.TOKENS}:{system_id}"

    def load(self) -> Tokens | None:
        raw = self.conn.get(self.key)
        if raw is None:
            return None
        try:
            return Tokens.from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.error("asperion system %s: stored tokens are unreadable; run koppel connect again", self.system_id)
            return None

    def save(self, tokens: Tokens) -> None:
        self.conn.set(self.key, tokens.to_json())

    def lock(self, timeout: float, wait: float) -> redis.lock.Lock:
        found: redis.lock.Lock = self.conn.lock(f"{self.key}:lock", timeout=timeout, blocking_timeout=wait, sleep=0.05)
        return found


def store_authorization(
    http: httpx.Client, app: OAuthApp, conn: redis.Redis, system_id: str, code: str, *,
    clock: Callable[[], float] = time.time,
) -> Tokens:  # fmt: skip
    """The consent's last step: trade `code` for tokens and store them for the system."""
    tokens = exchange_code(http, app, code, clock=clock)
    TokenStore(conn, system_id).save(tokens)
    log.info("asperion system %s: authorised; access token valid for %.0f s", system_id, tokens.seconds_left(clock()))
    return tokens


class AsperionAuth(httpx.Auth):
    """Bearer auth for one Asperion system: refreshed before it expires, and once after a 401. Synchronous
    only (it talks to Redis)."""

    def __init__(
        self, store: TokenStore, app: OAuthApp, http: httpx.Client, *, clock: Callable[[], float] = time.time,
        lock_timeout: float = 60.0, lock_wait: float = 30.0,
    ) -> None:  # fmt: skip
        self.store, self.app, self.http, self.clock = store, app, http, clock
        self.lock_timeout, self.lock_wait = lock_timeout, lock_wait
        self.refreshes = 0

    def _stored(self) -> Tokens:
        tokens = self.store.load()
        if tokens is None:
            raise AsperionAuthError(
                f"no Asperion authorisation for system {self.store.system_id!r}: run "
                f"`koppel connect {self.store.system_id}` and approve in the browser"
            )
        return tokens

    def _expiring(self, tokens: Tokens) -> bool:
        return tokens.seconds_left(self.clock()) < REFRESH_MARGIN

    def access_token(self) -> str:
        tokens = self._stored()
        return (self.refresh(stale=tokens.access_token) if self._expiring(tokens) else tokens).access_token

    def refresh(self, *, stale: str) -> Tokens:
        """A stored access token newer than `stale`, refreshing at Asperion only if no other worker did."""
        lock = self.store.lock(self.lock_timeout, self.lock_wait)
        if not lock.acquire():
            raise AsperionUnavailable(f"asperion system {self.store.system_id}: token refresh lock busy")
        try:
            tokens = self._stored()
            if tokens.access_token != stale and not self._expiring(tokens):
                return tokens  # refreshed by another worker meanwhile
            fresh = refresh_tokens(self.http, self.app, tokens.refresh_token, clock=self.clock)
            self.store.save(fresh)
            self.refreshes += 1
            log.info("asperion system %s: access token refreshed", self.store.system_id)
            return fresh
        finally:
            with contextlib.suppress(LockError):
                lock.release()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        fresh = self.refresh(stale=token)
        request.headers["Authorization"] = f"Bearer {fresh.access_token}"
        request.extensions = {**request.extensions, AUTH_RETRY: True}
        yield request

    async def async_auth_flow(  # pragma: no cover - guard only
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise RuntimeError("AsperionAuth is synchronous (it uses Redis); use it with httpx.Client")
        yield request
