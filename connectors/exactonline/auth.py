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

Tokens live in Redis as JSON under one key per system id. They never appear in logs, reprs or
exception messages. A refresh that reached Exact but whose answer was lost (timeout, crash before
the store) cannot be repaired: the old refresh token is dead, and the set-up must be run again.
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

from connectors import oauth
from connectors.exactonline.errors import (
    ExactAuthError,
    ExactResponseError,
    ExactUnavailable,
    InvalidState,
    TokenRefreshBusy,
)
from connectors.oauth import STATE_MAX_AGE
from connectors.oauth import sign_state as sign_state  # re-exported: the consent step
from gateway import keys

log = logging.getLogger(__name__)

"""Seconds an authorisation `state` stays valid (the user must finish the consent screen in time)."""
TOKEN_TIMEOUT = 20.0
"""Seconds a token request may take; ExactAuth's lock timeout (60 s) is well above it."""


# -- the consent step ----------------------------------------------------------------------------


def authorize_url(base_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    """Where to send the user's browser: Exact's consent page, which comes back with code and state."""
    query = urlencode({"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "state": state})
    return f"{base_url.rstrip('/')}/api/oauth2/auth?{query}"


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


@dataclass(frozen=True)
class Tokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    """Epoch seconds at which the access token stops working."""
    obtained_at: float

    def seconds_left(self, now: float) -> float:
        return self.expires_at - now

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at,
                "obtained_at": self.obtained_at,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Tokens:
        data = json.loads(raw)
        return cls(
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
            expires_at=float(data["expires_at"]),
            obtained_at=float(data.get("obtained_at", 0)),
        )


def _token_request(http: httpx.Client, app: OAuthApp, form: dict[str, str], clock: Callable[[], float]) -> Tokens:
    grant = form["grant_type"]
    try:
        # A bounded timeout: the refresh lock (ExactAuth.lock_timeout) must outlive this request.
        response = http.post(app.token_url, data=form, headers={"Accept": "application/json"}, timeout=TOKEN_TIMEOUT)
    except httpx.TransportError as exc:
        raise ExactUnavailable(f"Exact token endpoint unreachable ({type(exc).__name__}) during {grant}") from None
    if response.status_code >= 500:
        raise ExactUnavailable(
            f"Exact token endpoint answered {response.status_code} to {grant}", status=response.status_code
        )
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 401 and "not expired" in response.text.lower():
        raise TokenRefreshBusy("Exact refused the refresh: access token not expired yet")
    if response.status_code >= 400:
        error = re.sub(r"[^a-z_]", "", str(body.get("error", "")))[:40] if isinstance(body, dict) else ""
        raise ExactAuthError(
            f"Exact rejected the {grant} grant ({response.status_code} {error or 'error'}): "
            "run the Exact Online authorisation again"
        )
    try:
        access, refresh, expires_in = body["access_token"], body["refresh_token"], int(str(body["expires_in"]))
    except (KeyError, TypeError, ValueError):
        raise ExactResponseError(
            f"Exact's token response to {grant} lacks access_token/refresh_token/expires_in"
        ) from None
    now = clock()
    return Tokens(access_token=str(access), refresh_token=str(refresh), expires_at=now + expires_in, obtained_at=now)


def exchange_code(http: httpx.Client, app: OAuthApp, code: str, *, clock: Callable[[], float] = time.time) -> Tokens:
    """Trade the single-use authorisation code from the redirect for the first token pair."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": app.redirect_uri,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
    }
    return _token_request(http, app, form, clock)


def refresh_tokens(
    http: httpx.Client, app: OAuthApp, refresh_token: str, *, clock: Callable[[], float] = time.time
) -> Tokens:
    """Spend a refresh token (it dies, and so do all older ones) for a new pair. Prefer ExactAuth.refresh."""
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
    }
    return _token_request(http, app, form, clock)


class TokenStore:
    """The token pair of one Exact system, as JSON in Redis, plus the lock that serialises refreshes."""

    def __init__(self, conn: redis.Redis, system_id: str, *, namespace: str = keys.TOKENS) -> None:
        self.conn = conn
        self.system_id = system_id
        self.key = f"{namespace}:{system_id}"
        self.lock_key = f"{self.key}:lock"
        self.division_key = f"{self.key}:division"

    def load(self) -> Tokens | None:
        raw = self.conn.get(self.key)
        if raw is None:
            return None
        try:
            return Tokens.from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.error("exact system %s: stored tokens are unreadable; the authorisation must be redone", self.system_id)
            return None

    def save(self, tokens: Tokens) -> None:
        self.conn.set(self.key, tokens.to_json())

    def delete(self) -> None:
        self.conn.delete(self.key, self.division_key)

    def load_division(self) -> int | None:
        """The division `current/Me` named for this authorisation, cached so workers ask Exact only once."""
        raw = self.conn.get(self.division_key)
        return int(raw) if raw is not None and raw.isdigit() else None

    def save_division(self, division: int) -> None:
        self.conn.set(self.division_key, str(division))

    def lock(self, timeout: float, blocking_timeout: float) -> redis.lock.Lock:
        lock: redis.lock.Lock = self.conn.lock(
            self.lock_key, timeout=timeout, blocking_timeout=blocking_timeout, sleep=0.05
        )  # redis-py leaves Redis.lock unannotated
        return lock


def store_authorization(
    http: httpx.Client, app: OAuthApp, conn: redis.Redis, system_id: str, code: str, *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Trade the consent's `code` for tokens and store them (a new authorisation may be for another
    administration: the remembered division is forgotten)."""
    tokens = exchange_code(http, app, code, clock=clock)
    store = TokenStore(conn, system_id)
    store.save(tokens)
    store.conn.delete(store.division_key)
    log.info("exact system %s: authorised; access token valid for %.0f s", system_id, tokens.seconds_left(clock()))


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


class ExactAuth(httpx.Auth):
    """httpx auth for one Exact system: bearer token from the store, refreshed once on 401, then retried.

    Safe across threads and processes: refreshing happens under the system's Redis lock (see module
    docstring). Synchronous only — it talks to Redis — so use it with `httpx.Client`.
    """

    def __init__(
        self,
        store: TokenStore,
        app: OAuthApp,
        http: httpx.Client,
        *,
        refresh_margin: float = 30.0,
        lock_timeout: float = 60.0,
        lock_wait: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.app = app
        self.http = http
        self.refresh_margin = refresh_margin
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        self.clock = clock
        self.refreshes = 0
        """Refreshes this instance performed at Exact (not counting ones it found done by others)."""

    def _stored(self) -> Tokens:
        tokens = self.store.load()
        if tokens is None:
            raise ExactAuthError(
                f"no Exact Online tokens for system {self.store.system_id!r}: complete the authorisation first"
            )
        return tokens

    def _expiring(self, tokens: Tokens) -> bool:
        return tokens.seconds_left(self.clock()) < self.refresh_margin

    def access_token(self) -> str:
        """A usable access token, refreshing first when it has less than `refresh_margin` left."""
        tokens = self._stored()
        if self._expiring(tokens):
            tokens = self.refresh(stale=tokens.access_token, rejected=False)
        return tokens.access_token

    def refresh(self, *, stale: str, rejected: bool) -> Tokens:
        """Make sure the stored access token is newer than `stale`, refreshing at Exact only if needed.

        `rejected` says the API answered 401 to `stale` (as opposed to "it is about to expire").
        """
        lock = self.store.lock(self.lock_timeout, self.lock_wait)
        if not lock.acquire():
            raise TokenRefreshBusy(
                f"exact system {self.store.system_id}: token refresh lock busy for {self.lock_wait:.0f} s"
            )
        try:
            tokens = self._stored()
            if tokens.access_token != stale and not self._expiring(tokens):
                return tokens  # another process refreshed while we waited for the lock
            try:
                fresh = refresh_tokens(self.http, self.app, tokens.refresh_token, clock=self.clock)
            except TokenRefreshBusy:
                if rejected:
                    raise
                return tokens  # Exact says the current token still works: use it
            self.store.save(fresh)
            self.refreshes += 1
            log.info(
                "exact system %s: access token refreshed; valid for %.0f s",
                self.store.system_id,
                fresh.seconds_left(self.clock()),
            )
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
        fresh = self.refresh(stale=token, rejected=True)
        request.headers["Authorization"] = f"Bearer {fresh.access_token}"
        request.extensions = {**request.extensions, "koppel_exact_auth_retry": True}
        yield request

    async def async_auth_flow(  # pragma: no cover - guard only
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise RuntimeError("ExactAuth is synchronous (it uses Redis); use it with httpx.Client")
        yield request
