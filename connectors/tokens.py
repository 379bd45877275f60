"""OAuth2 bearer tokens, written once for every connector that signs in with them.

    Tokens           an access token, its refresh token and its expiry (the tokens kept out of reprs)
    TokenEndpoint    one system's token endpoint: the grants posted to it and how its answers are read;
                     a connector makes one, naming its errors and its words (connectors/exactonline/auth.py,
                     connectors/asperion/auth.py)
    TokenStore       one system's tokens in Redis, encrypted (gateway/vault.py) at `koppel:exact:tokens:{system}`
                     (the OAuth token namespace), and the lock that serialises their refresh
    BearerAuth       httpx auth: a bearer token on every request; a 401 gets one new token and one retry
    RefreshingAuth   BearerAuth for authorization-code tokens: refreshed when less than `refresh_margin`
                     seconds are left, and once after a 401; held in the process's memory between requests

Refresh tokens may be single use (a rotating refresh token dies when spent). Two workers refreshing at
once would leave one holding a dead token, so a refresh holds the system's Redis lock and re-reads the
stored tokens under it: when another worker refreshed meanwhile, those are used and nothing is spent.

A worker sends many requests with one access token, so `RefreshingAuth` keeps the tokens it read (or got)
in memory and reads Redis again only when that copy is `recheck` seconds old (`RECHECK`, 5), when its
access token is about to expire (the refresh re-reads under the lock, as above) or after the API refused it
(a 401: another process may have refreshed or the operator consented again). What another process stored
or deleted is so seen within `recheck` seconds, at once when the old token no longer works; the refresh
token in memory is never spent (a refresh spends the one it reads under the lock).

A refused grant (a revoked or spent refresh token, a used code) is the system's AuthFailed naming
`koppel connect <system>`. Tokens, codes and client secrets never reach logs, reprs or messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import urlencode

import httpx
import redis
from redis.exceptions import LockError

from connectors.http import read_json
from gateway import keys, notify, vault
from gateway.errors import AuthFailed, BadResponse, TransientError, Unavailable

log = logging.getLogger(__name__)

TOKEN_TIMEOUT = 20.0
RECHECK = 5.0
"""Seconds a process uses its memory copy of a system's stored tokens before reading them again."""
"""Seconds a token request may take; the refresh lock's timeout (60 s) is well above it."""
AUTH_RETRY = "koppel_auth_retry"
"""The request extension set on a request sent again with a new token (the HTTP kit counts it)."""

__all__ = [
    "AUTH_RETRY",
    "RECHECK",
    "TOKEN_TIMEOUT",
    "App",
    "BearerAuth",
    "RefreshingAuth",
    "TokenEndpoint",
    "TokenStore",
    "Tokens",
    "consent_url",
    "post_form",
]


class App(Protocol):
    """An app registered at a system (a connector's `OAuthApp`)."""

    @property
    def client_id(self) -> str: ...

    @property
    def client_secret(self) -> str: ...

    @property
    def redirect_uri(self) -> str: ...

    @property
    def token_url(self) -> str: ...


def consent_url(url: str, client_id: str, redirect_uri: str, state: str, *, scope: str | None = None) -> str:
    """`url` (the system's consent page) asking for an authorization code, which comes back with `state`."""
    query = {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code"}
    if scope is not None:
        query["scope"] = scope
    return f"{url}?{urlencode({**query, 'state': state})}"


@dataclass(frozen=True)
class Tokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    """Epoch seconds at which the access token stops working."""
    obtained_at: float = 0.0

    def seconds_left(self, now: float) -> float:
        return self.expires_at - now

    def to_json(self) -> str:
        return json.dumps({"access_token": self.access_token, "refresh_token": self.refresh_token,
                           "expires_at": self.expires_at, "obtained_at": self.obtained_at})  # fmt: skip

    @classmethod
    def from_json(cls, raw: str | bytes) -> Tokens:
        data = json.loads(raw)
        return cls(str(data["access_token"]), str(data["refresh_token"]), float(data["expires_at"]),
                   float(data.get("obtained_at", 0)))  # fmt: skip


def post_form(
    http: httpx.Client, url: str, form: dict[str, str], *, where: str, grant: str,
    unavailable: type[Unavailable],
) -> tuple[httpx.Response, Any]:  # fmt: skip
    """POST a grant to a token endpoint: its answer and the answer's JSON (None when empty or not JSON).

    Unreachable, 5xx and 429 (a rate limit spends no grant) raise `unavailable`, naming `where`.
    """
    try:
        response = http.post(url, data=form, headers={"Accept": "application/json"}, timeout=TOKEN_TIMEOUT)
    except httpx.TransportError as exc:
        raise unavailable(f"{where} unreachable ({type(exc).__name__}) during {grant}") from None
    status = response.status_code
    if status >= 500 or status == 429:
        raise unavailable(f"{where} answered {status} to {grant}", status=status)
    try:
        body = read_json(response.content)
    except ValueError:
        body = None
    return response, body


@dataclass(frozen=True)
class TokenEndpoint:
    """A system's OAuth2 token endpoint (authorization code and refresh grants): what differs between
    systems is named here, the grants and the reading of answers are shared."""

    title: str
    """The system as an operator knows it ("Exact Online"), in messages."""
    where: str
    """The endpoint in messages about reaching it ("Asperion identity server")."""
    unavailable: type[Unavailable]
    refused: type[AuthFailed]
    malformed: type[BadResponse]
    busy: type[TransientError]
    """Raised when the refresh lock stays held elsewhere (and for a refresh refused as too early)."""
    lacking: str = "access_token/refresh_token/expires_in"
    """What a malformed answer lacks, as its message says."""
    default_lifetime: float | None = None
    """Seconds an access token lives when the answer has no `expires_in`; None: the answer must say."""
    early_refusal: str | None = None
    """Text of a 401 refusing a refresh as too early (Exact: "not expired"): `busy` is raised, and a
    refresh made only because expiry is near keeps the current token."""

    def reconnect(self, system_id: str | None) -> str:
        """The fix for a missing or refused authorisation."""
        if system_id:
            return f"run `koppel connect {system_id}` and approve in the browser"
        return f"run `koppel connect` for the {self.title} system again"

    def exchange(
        self, http: httpx.Client, app: App, code: str, *, clock: Callable[[], float] = time.time,
        system_id: str | None = None,
    ) -> Tokens:  # fmt: skip
        """Trade the single-use code of the consent's redirect for the first token pair."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": app.redirect_uri}
        return self._grant(http, app, form, clock, system_id)

    def refresh(
        self, http: httpx.Client, app: App, refresh_token: str, *, clock: Callable[[], float] = time.time,
        system_id: str | None = None,
    ) -> Tokens:  # fmt: skip
        """Spend a refresh token for a new pair (prefer `RefreshingAuth.refresh`, which holds the lock)."""
        return self._grant(http, app, {"grant_type": "refresh_token", "refresh_token": refresh_token}, clock, system_id)

    def authorise(
        self, http: httpx.Client, app: App, store: TokenStore, code: str, *, clock: Callable[[], float] = time.time
    ) -> Tokens:
        """The consent's last step: trade `code` for tokens and store them in place of any earlier ones."""
        store.check_writable()  # before the single-use code is spent
        tokens = self.exchange(http, app, code, clock=clock, system_id=store.system_id)
        store.replace(tokens)
        log.info("%s system %s: authorised; access token valid for %.0f s", self.title, store.system_id,
                 tokens.seconds_left(clock()))  # fmt: skip
        return tokens

    def _grant(
        self, http: httpx.Client, app: App, form: dict[str, str], clock: Callable[[], float], system_id: str | None
    ) -> Tokens:
        grant = form["grant_type"]
        form = {**form, "client_id": app.client_id, "client_secret": app.client_secret}
        response, body = post_form(
            http, app.token_url, form, where=self.where, grant=grant, unavailable=self.unavailable,
        )  # fmt: skip
        status = response.status_code
        if self.early_refusal is not None and status == 401 and self.early_refusal in response.text.lower():
            raise self.busy(f"{self.title} refused the refresh: access token not expired yet")
        if status >= 400:
            error = re.sub(r"[^a-z_]", "", str(body.get("error", "")))[:40] if isinstance(body, dict) else ""
            raise self.refused(f"{self.title} refused the {grant} grant ({status} {error or 'error'}): "
                               f"{self.reconnect(system_id)}")  # fmt: skip
        try:
            lifetime = body.get("expires_in", self.default_lifetime)
            access, refresh = str(body["access_token"]), str(body["refresh_token"])
            if lifetime is None:
                raise ValueError("no expires_in")
            expires_in = float(str(lifetime))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise self.malformed(f"{self.title}'s token answer to {grant} lacks {self.lacking}") from None
        now = clock()
        return Tokens(access, refresh, now + expires_in, now)


class TokenStore:
    """The tokens of one system, encrypted in Redis, plus the lock that serialises their refresh."""

    def __init__(self, conn: redis.Redis, system_id: str, *, namespace: str = keys.TOKENS) -> None:
        self.conn = conn
        self.system_id = system_id
        self.key = f"{namespace}:{system_id}"
        self.lock_key = f"{self.key}:lock"
        self.failed_key = f"{self.key}:refresh_failed"
        """Why (and when) the system last refused a refresh; gone once tokens are saved again."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.system_id!r})"

    def load(self) -> Tokens | None:
        """The stored tokens, or None. A record stored before encryption (plain JSON) or under an earlier key
        is written back under the current key; one no given key opens raises SecretUnreadable."""
        raw = self.conn.get(self.key)
        if raw is None:
            return None
        safe = vault.vault()
        fix, what = f"run `koppel connect {self.system_id}` again", f"system {self.system_id}'s stored OAuth tokens"
        plain = vault.is_plain(raw)
        text = keys.text(raw) if plain else safe.open(raw, what=what, fix=fix)
        try:
            tokens = Tokens.from_json(text)
        except (ValueError, KeyError, TypeError):
            log.error("system %s: its stored OAuth tokens are unreadable; %s", self.system_id, fix)
            return None
        if safe.can_seal and (plain or not safe.is_current(raw)):
            vault.replace_if_unchanged(self.conn, self.key, raw, safe.seal(text, what="OAuth tokens"))
            log.info("system %s: stored OAuth tokens re-encrypted with %s", self.system_id, safe.source)
        return tokens

    def check_writable(self) -> None:
        """SecretKeyMissing when tokens could not be stored (no key): checked before a grant spends anything."""
        if not vault.vault().can_seal:
            vault.vault().seal("", what=f"system {self.system_id}'s OAuth tokens")

    def save(self, tokens: Tokens) -> None:
        """Store `tokens` encrypted (SecretKeyMissing, naming KOPPEL_SECRET_KEY, when there is no key)."""
        sealed = vault.vault().seal(tokens.to_json(), what=f"system {self.system_id}'s OAuth tokens")
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.set(self.key, sealed)
            pipe.delete(self.failed_key)
            pipe.execute()

    def note_refresh_refused(self, reason: str, *, at: float | None = None) -> None:
        """The system refused a refresh (the operator must consent again): kept for the console to show."""
        self.conn.set(self.failed_key, json.dumps({"at": time.time() if at is None else at, "reason": reason}))

    def refresh_refused(self) -> tuple[float, str] | None:
        """When and why the system last refused a refresh of the stored tokens, or None."""
        raw = self.conn.get(self.failed_key)
        try:
            data = json.loads(raw) if raw is not None else None
            return (float(data["at"]), str(data["reason"])) if data is not None else None
        except (ValueError, KeyError, TypeError):
            return None

    def replace(self, tokens: Tokens) -> None:
        """A new consent's tokens (a subclass forgets here what belonged to the earlier one)."""
        self.save(tokens)

    def delete(self) -> None:
        self.conn.delete(self.key, self.failed_key)

    def lock(self, timeout: float, blocking_timeout: float) -> redis.lock.Lock:
        # redis-py leaves Redis.lock unannotated
        found: redis.lock.Lock = self.conn.lock(self.lock_key, timeout=timeout, blocking_timeout=blocking_timeout,
                                                sleep=0.05)  # fmt: skip
        return found


class BearerAuth(httpx.Auth):
    """httpx auth sending `Authorization: Bearer <token()>`. A 401 gets one new token (`renewed`) and one
    retry, marked with the `AUTH_RETRY` extension (the HTTP kit counts it and raises its auth error when the
    retry is refused too). Synchronous only: the tokens live in Redis."""

    def token(self) -> str:
        """A token to send."""
        raise NotImplementedError

    def renewed(self, refused: str) -> str:
        """A new token in place of `refused`, which the API answered 401 to."""
        raise NotImplementedError

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        request.headers["Authorization"] = f"Bearer {self.renewed(token)}"
        request.extensions = {**request.extensions, AUTH_RETRY: True}
        yield request

    async def async_auth_flow(  # pragma: no cover - guard only
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise RuntimeError(f"{type(self).__name__} is synchronous (it uses Redis); use it with httpx.Client")
        yield request


class RefreshingAuth(BearerAuth):
    """Bearer auth for one system's authorization-code tokens: refreshed before they expire and once after
    a 401, under the system's Redis lock (see the module docstring). A connector subclasses it, naming its
    `endpoint` and `default_margin`."""

    endpoint: ClassVar[TokenEndpoint]
    default_margin: ClassVar[float] = 60.0

    def __init__(
        self,
        store: TokenStore,
        app: App,
        http: httpx.Client,
        *,
        refresh_margin: float | None = None,
        lock_timeout: float = 60.0,
        lock_wait: float = 30.0,
        clock: Callable[[], float] = time.time,
        recheck: float | None = None,
    ) -> None:
        """`recheck`: seconds (of `time.monotonic`) the tokens read or got are used from memory before they are
        read from the store again (0: read for every request; None: `RECHECK` as it is when they are used)."""
        self.store = store
        self.app = app
        self.http = http
        self.refresh_margin = self.default_margin if refresh_margin is None else refresh_margin
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        self.clock = clock
        self.refreshes = 0
        """Refreshes this instance made at the system (not counting ones it found done by others)."""
        self.recheck = recheck
        self._held: tuple[Tokens, float] | None = None
        """The tokens last read or got, and when (`time.monotonic`): one tuple, so threads see both or neither."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store.system_id!r})"

    def _current(self) -> Tokens:
        """The tokens in memory while they are younger than `recheck` seconds, else the stored ones."""
        held = self._held
        if held is not None and time.monotonic() - held[1] < (RECHECK if self.recheck is None else self.recheck):
            return held[0]
        return self._stored()

    def _keep(self, tokens: Tokens) -> Tokens:
        self._held = (tokens, time.monotonic())
        return tokens

    def _stored(self) -> Tokens:
        self._held = None
        try:
            tokens = self.store.load()
        except vault.SecretUnreadable as unreadable:  # a wrong or missing key: as good as no authorisation
            self._notify(str(unreadable).partition(": set ")[0])
            raise self.endpoint.refused(str(unreadable)) from None
        if tokens is None:
            system = self.store.system_id
            self._notify(f"no {self.endpoint.title} authorisation is stored for it")
            raise self.endpoint.refused(f"no {self.endpoint.title} authorisation for system {system!r}: complete "
                                        f"the authorisation first ({self.endpoint.reconnect(system)})")  # fmt: skip
        return self._keep(tokens)

    def _notify(self, reason: str) -> None:
        """Tell the operator (gateway/notify.py) that the system must be connected again."""
        system = self.store.system_id
        notify.record(self.store.conn, "consent", reason, system=system,
                      fix=f"{self.endpoint.reconnect(system)}; then replay what failed meanwhile "
                          "(`koppel replay --integration ID`)")  # fmt: skip

    def _expiring(self, tokens: Tokens) -> bool:
        return tokens.seconds_left(self.clock()) < self.refresh_margin

    def access_token(self) -> str:
        """A usable access token, refreshed first when less than `refresh_margin` seconds are left."""
        tokens = self._current()
        return (self.refresh(stale=tokens.access_token) if self._expiring(tokens) else tokens).access_token

    def token(self) -> str:
        return self.access_token()

    def renewed(self, refused: str) -> str:
        return self.refresh(stale=refused, rejected=True).access_token

    def refresh(self, *, stale: str, rejected: bool = False) -> Tokens:
        """Stored tokens newer than `stale`, refreshing at the system only if no other worker did.

        `rejected` says the API answered 401 to `stale` (rather than "it is about to expire").
        """
        system = self.store.system_id
        lock = self.store.lock(self.lock_timeout, self.lock_wait)
        if not lock.acquire():
            raise self.endpoint.busy(f"{self.endpoint.title} system {system}: token refresh lock busy "
                                     f"for {self.lock_wait:.0f} s")  # fmt: skip
        try:
            tokens = self._stored()
            if tokens.access_token != stale and not self._expiring(tokens):
                return tokens  # another worker refreshed while this one waited for the lock
            self.store.check_writable()  # a refresh token spent and its successor not stored: lost for good
            try:
                fresh = self.endpoint.refresh(self.http, self.app, tokens.refresh_token, clock=self.clock,
                                              system_id=system)  # fmt: skip
            except self.endpoint.refused as refused:
                self.store.note_refresh_refused(str(refused), at=self.clock())
                self._notify(str(refused).partition(": run ")[0])
                raise
            except self.endpoint.busy:
                if rejected or self.endpoint.early_refusal is None:
                    raise
                return tokens  # refused as too early: the current token still works
            self.store.save(fresh)
            self._keep(fresh)
            self.refreshes += 1
            log.info("%s system %s: access token refreshed; valid for %.0f s", self.endpoint.title, system,
                     fresh.seconds_left(self.clock()))  # fmt: skip
            return fresh
        finally:
            with contextlib.suppress(LockError):
                lock.release()
