"""Service-to-service OAuth for Business Central: the client-credentials grant at Microsoft Entra ID.

    POST {login_url}/{tenant}/oauth2/v2.0/token
         grant_type=client_credentials & client_id & client_secret
         & scope=https://api.businesscentral.dynamics.com/.default
      → {"token_type": "Bearer", "expires_in": 3599, "access_token": "…"}

No consent flow and no refresh token: a new token is simply asked for. One token per system is cached
in Redis (`koppel:cache:{system}:bc_token`, expiring with the token) so every worker shares it, and is
replaced `REFRESH_MARGIN` seconds before it expires (a worker uses the token it read or got from memory and
reads Redis again after `connectors.tokens.RECHECK` seconds); a 401 from BC is answered by one new token and one
retry of the request (`ClientCredentialsAuth`, on connectors/tokens.py's `BearerAuth`), after which the kit
raises `BusinessCentralAuthError`.

Entra ID refuses with `{"error", "error_description": "AADSTS7000215: Invalid client secret …",
"error_codes": [7000215]}`; the AADSTS codes an operator meets are mapped to a message naming the fix
(`AADSTS_ADVICE`). Tokens and the secret never reach logs, reprs or messages.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from connectors.businesscentral.errors import BusinessCentralAuthError, BusinessCentralUnavailable
from connectors.tokens import AUTH_RETRY as AUTH_RETRY
from connectors.tokens import RECHECK, BearerAuth, post_form
from connectors.tokens import TOKEN_TIMEOUT as TOKEN_TIMEOUT
from gateway import keys, vault

log = logging.getLogger("koppel.businesscentral")

LOGIN_URL = "https://login.microsoftonline.com"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
REFRESH_MARGIN = 300.0
"""Seconds before its expiry a cached token is replaced (Entra ID tokens live about an hour)."""

AADSTS_ADVICE: dict[str, str] = {
    "7000215": "the client secret is wrong: set credentials.client_secret to the secret's value (not its id)",
    "7000222": "the client secret has expired: create a new one in the app registration and set "
    "credentials.client_secret",
    "700016": "no app with this client_id in the tenant: check settings.client_id and settings.tenant "
    "(the app must be registered, or consented, in the customer's tenant)",
    "90002": "the tenant does not exist: check settings.tenant (the directory's id or domain)",
    "900023": "the tenant is not a valid id or domain: check settings.tenant",
    "90013": "the tenant is not a valid id or domain: check settings.tenant",
    "500011": "Business Central is not available in the tenant: check settings.tenant, and that the tenant "
    "has Business Central",
    "70011": "the scope is refused: the app needs the Business Central API permission (API.ReadWrite.All, "
    "application) with admin consent",
    "1002012": "the scope is refused: the app needs the Business Central API permission (API.ReadWrite.All, "
    "application) with admin consent",
    "7000218": "the request carried no client secret: set credentials.client_secret",
    "700024": "the client assertion is invalid: use a client secret (credentials.client_secret)",
}


@dataclass(frozen=True)
class App:
    """The app registration Koppel signs in as; the secret comes from the environment, never the file."""

    tenant: str
    client_id: str
    client_secret: str = field(repr=False)
    login_url: str = LOGIN_URL
    scope: str = SCOPE

    @property
    def token_url(self) -> str:
        return f"{self.login_url.rstrip('/')}/{self.tenant}/oauth2/v2.0/token"


def aadsts_code(body: Any) -> str | None:
    """The AADSTS number of an Entra ID error body (from `error_codes`, else the description's prefix)."""
    if not isinstance(body, dict):
        return None
    codes = body.get("error_codes")
    if isinstance(codes, list) and codes and type(codes[0]) is int and codes[0] >= 0:
        return str(codes[0])
    description = str(body.get("error_description") or "")
    if description.startswith("AADSTS"):
        digits = description[6:].split(":", 1)[0].strip()
        return digits if digits.isdigit() else None
    return None


def token_error(body: Any, status: int) -> BusinessCentralAuthError:
    """The error for a refused token request: the AADSTS code with its fix, else Entra ID's own words."""
    code = aadsts_code(body)
    error = str(body.get("error") or "") if isinstance(body, dict) else ""
    advice = AADSTS_ADVICE.get(code or "")
    if advice is None:
        description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
        first = description.split("\n", 1)[0].split(" Trace ID:", 1)[0].strip()[:300]
        advice = first or f"the token endpoint answered {status}"
    label = f"AADSTS{code}" if code else error or str(status)
    return BusinessCentralAuthError(
        f"Business Central sign-in refused ({label}): {advice}", status=status, code=label, message=advice
    )


def request_token(http: httpx.Client, app: App, clock: Callable[[], float] = time.time) -> tuple[str, float]:
    """(access token, expiry in epoch seconds) from the token endpoint; BusinessCentralAuthError when refused."""
    form = {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": app.client_secret,
            "scope": app.scope}  # fmt: skip
    started = clock()
    response, body = post_form(http, app.token_url, form, where="Business Central token endpoint",
                               grant="client_credentials", unavailable=BusinessCentralUnavailable)  # fmt: skip
    if response.status_code != 200:
        raise token_error(body, response.status_code)
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise BusinessCentralAuthError("the token endpoint's answer holds no access_token", status=502)
    try:
        lifetime = float(body.get("expires_in", 3599))
    except (TypeError, ValueError):
        lifetime = 3599.0
    return body["access_token"], started + lifetime


class TokenCache:
    """The system's current token in Redis, shared by every worker; expires with the token."""

    def __init__(self, conn: redis.Redis, system_id: str) -> None:
        self.conn = conn
        self.key = keys.cache(system_id, "bc_token")

    def load(self) -> tuple[str, float] | None:
        raw = self.conn.get(self.key)
        if not raw:
            return None
        try:  # a plain (older) or unopenable entry is no token: a new one is fetched and stored encrypted
            data = json.loads(vault.vault().open(raw, what="the cached token", fix="wait"))
            return str(data["access_token"]), float(data["expires_at"])
        except (vault.SecretUnreadable, ValueError, KeyError, TypeError):
            return None

    def save(self, token: str, expires_at: float, now: float) -> None:
        ttl = max(1, int(expires_at - now))
        safe = vault.vault()
        if not safe.can_seal:  # no key (KOPPEL_SECRET_KEY): each worker keeps its token to itself
            return
        sealed = safe.seal(json.dumps({"access_token": token, "expires_at": expires_at}),
                           what="Business Central's access token")  # fmt: skip
        self.conn.set(self.key, sealed, ex=ttl)

    def drop(self, token: str) -> None:
        """Forget `token` (refused by BC), unless another worker has replaced it already."""
        found = self.load()
        if found is not None and found[0] == token:
            self.conn.delete(self.key)


class ClientCredentialsAuth(BearerAuth):
    """Bearer auth with a cached client-credentials token; a 401 gets one new token and one retry
    (connectors/tokens.py)."""

    def __init__(
        self,
        app: App,
        http: httpx.Client,
        cache: TokenCache | None = None,
        *,
        clock: Callable[[], float] = time.time,
        margin: float = REFRESH_MARGIN,
        recheck: float = RECHECK,
    ) -> None:
        """`recheck`: seconds (of `time.monotonic`) a token read from the cache or got is used from memory
        before the cache is read again (0: read for every request)."""
        self.app = app
        self.http = http
        self.cache = cache
        self.clock = clock
        self.margin = margin
        self._local: tuple[str, float] | None = None
        self.recheck = recheck
        self._held_at = -float("inf")
        """When (`time.monotonic`) `_local` was read from the cache or got."""
        self.requested = 0
        """Tokens this process asked the token endpoint for."""

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(tenant={self.app.tenant!r}, client_id={self.app.client_id!r})"

    def token(self) -> str:
        """A token with more than `margin` seconds left: cached, else a new one."""
        now = self.clock()
        local = self._local
        if local is not None and local[1] - now > self.margin and time.monotonic() - self._held_at < self.recheck:
            return local[0]  # young enough: not read from Redis again
        found = (self.cache.load() if self.cache is not None else None) or self._local  # uncached: no key
        if found is not None and found[1] - now > self.margin:
            self._local, self._held_at = found, time.monotonic()
            return found[0]
        return self.renew()

    def renew(self) -> str:
        token, expires_at = request_token(self.http, self.app, self.clock)
        self.requested += 1
        if self.cache is not None:
            self.cache.save(token, expires_at, self.clock())
        self._local, self._held_at = (token, expires_at), time.monotonic()
        log.info("Business Central: new access token for tenant %s", self.app.tenant)
        return token

    def forget(self, token: str) -> None:
        if self.cache is not None:
            self.cache.drop(token)
        if self._local is not None and self._local[0] == token:
            self._local = None

    def renewed(self, refused: str) -> str:
        self.forget(refused)
        return self.renew()
