"""Auth stubs that behave like the real servers.

* HTTP Basic (`basic_credentials`; compare with `secret_equals`, in constant time).
* Bearer tokens (`BearerTokens`): issued with a lifetime on the sandbox's clock, checked on every call,
  expirable at once (`expire_all`) so tests can meet the 401 a client must refresh on.
* An OAuth2 authorization server (`OAuthServer`): the authorization-code flow with a consent page (or
  auto-approve), codes single use and short-lived, refresh tokens that rotate (only the newest works;
  an older one answers `invalid_grant`), optionally refused while the access token is still fresh
  (`refresh_window`), and the client-credentials grant. Client authentication by form fields or
  HTTP Basic. It counts token requests, refreshes and refusals by OAuth error.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import html
import json
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """The user and password of an `Authorization: Basic` header, if it holds a well-formed pair."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    with contextlib.suppress(ValueError, binascii.Error):
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        if sep:
            return user, password
    return None


def secret_equals(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class BearerTokens:
    """The access tokens a sandbox issued and when each expires (epoch seconds on its clock)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.expiry: dict[str, float] = {}

    def issue(self, lifetime: float) -> str:
        token = secrets.token_urlsafe(32)
        self.expiry[token] = self.clock() + lifetime
        return token

    def valid(self, request: Request) -> bool:
        """Whether the request carries `Authorization: Bearer <a live token>`."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expires_at = self.expiry.get(token.strip()) if scheme.lower() == "bearer" else None
        return expires_at is not None and expires_at > self.clock()

    def left(self, token: str) -> float:
        """Seconds until `token` expires (negative once it has; 0 for an unknown one)."""
        return self.expiry.get(token, self.clock()) - self.clock()

    def expire_all(self) -> int:
        """Every token expires now; how many there were."""
        now = self.clock()
        for token in self.expiry:
            self.expiry[token] = min(self.expiry[token], now)
        return len(self.expiry)

    def live(self) -> int:
        now = self.clock()
        return sum(1 for expires_at in self.expiry.values() if expires_at > now)

    def clear(self) -> None:
        self.expiry.clear()


class OAuthSettings(Protocol):
    """What an `OAuthServer` reads, at each request, from the sandbox's configuration."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    """Allowed redirect URIs; empty allows any."""
    auto_approve: bool
    token_lifetime: int
    refresh_window: int
    """A refresh is refused (401 "Access token not expired") while the access token has more than this many
    seconds left; 0 never refuses."""
    code_lifetime: int


@dataclass
class RegisteredApp:
    """A client registered at the authorization server (an `OAuthSettings`)."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] = ()
    auto_approve: bool = True
    token_lifetime: int = 3600
    refresh_window: int = 0
    code_lifetime: int = 600


@dataclass
class Grant:
    """One authorisation: its current refresh token and the access token issued with it."""

    refresh_token: str
    access_token: str
    expires_at: float


def oauth_error(status: int, error: str, description: str = "") -> JSONResponse:
    body = {"error": error, **({"error_description": description} if description else {})}
    return JSONResponse(body, status_code=status)


class OAuthServer:
    """An OAuth2 authorization server: `authorize` (the consent page) and `token` are its two endpoints.

    `grant_types` are the grants the platform offers; `expires_in_text` answers `expires_in` as a string
    (Exact Online does: "600"); `token_type` as the platform spells it.
    """

    def __init__(
        self,
        settings: OAuthSettings,
        tokens: BearerTokens,
        *,
        grant_types: Sequence[str] = ("authorization_code", "refresh_token"),
        expires_in_text: bool = False,
        token_type: str = "bearer",  # noqa: S107 - the token type's name, not a secret
        title: str = "Sandbox",
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.grant_types = tuple(grant_types)
        self.expires_in_text = expires_in_text
        self.token_type = token_type
        self.title = title
        self.codes: dict[str, tuple[str, float]] = {}
        self.grants: dict[str, Grant] = {}
        self.spent_refresh_tokens: set[str] = set()
        self.refreshes = 0
        self.token_requests = 0
        self.refused: Counter[str] = Counter()
        """Refused token requests by OAuth error (`invalid_grant` for a spent refresh token, …;
        `not_expired` for a refresh while the access token is fresh)."""

    @property
    def clock(self) -> Callable[[], float]:
        return self.tokens.clock

    # -- the authorization endpoint -----------------------------------------------------------------

    def issue_code(self, redirect_uri: str) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = (redirect_uri, self.clock())
        return code

    async def authorize(self, request: Request) -> Response:
        """GET: the consent page, or (auto-approve) the redirect back with `code` and `state`; POST: the decision."""
        params = dict(request.query_params) if request.method == "GET" else await _form(request)
        cfg = self.settings
        redirect_uri, state = params.get("redirect_uri", ""), params.get("state", "")
        if params.get("client_id") != cfg.client_id:
            return HTMLResponse("<h1>Unknown client_id</h1>", status_code=400)
        if not redirect_uri or (cfg.redirect_uris and redirect_uri not in cfg.redirect_uris):
            return HTMLResponse("<h1>redirect_uri not registered for this app</h1>", status_code=400)
        if params.get("response_type", "code") != "code":
            return HTMLResponse("<h1>Only response_type=code is supported</h1>", status_code=400)
        separator = "&" if "?" in redirect_uri else "?"
        if request.method == "POST":
            if params.get("decision") != "approve":
                denied = urlencode({"error": "access_denied", "state": state})
                return RedirectResponse(f"{redirect_uri}{separator}{denied}", status_code=302)
        elif not cfg.auto_approve:
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
            )
            return HTMLResponse(
                f"<h1>{html.escape(self.title)}</h1><p>Allow this app to access your administration?</p>"
                f'<form method="post">{hidden}<button name="decision" value="approve">Approve</button>'
                '<button name="decision" value="deny">Deny</button></form>'
            )
        granted = urlencode({"code": self.issue_code(redirect_uri), "state": state})
        return RedirectResponse(f"{redirect_uri}{separator}{granted}", status_code=302)

    # -- the token endpoint ---------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        form = await _form(request)
        if "client_id" not in form and (basic := basic_credentials(request)) is not None:
            form["client_id"], form["client_secret"] = basic
        response = self._grant(form)
        if response.status_code >= 400:
            error = json.loads(bytes(response.body)).get("error")
            self.refused["not_expired" if response.status_code == 401 else str(error)] += 1
        return response

    def _issue(self, grant_id: str | None = None, *, refresh: bool = True) -> dict[str, Any]:
        lifetime = self.settings.token_lifetime
        access = self.tokens.issue(lifetime)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": self.token_type,
            "expires_in": str(lifetime) if self.expires_in_text else lifetime,
        }
        if refresh:
            body["refresh_token"] = refresh_token = secrets.token_urlsafe(32)
            self.grants[grant_id or secrets.token_hex(8)] = Grant(refresh_token, access, self.clock() + lifetime)
        return body

    def _grant(self, form: dict[str, str]) -> JSONResponse:
        cfg = self.settings
        if not (secret_equals(form.get("client_id", ""), cfg.client_id)
                and secret_equals(form.get("client_secret", ""), cfg.client_secret)):  # fmt: skip
            return oauth_error(400, "invalid_client")
        grant_type = form.get("grant_type", "")
        if grant_type not in self.grant_types:
            return oauth_error(400, "unsupported_grant_type")
        if grant_type == "client_credentials":
            return JSONResponse(self._issue(refresh=False))
        if grant_type == "authorization_code":
            issued = self.codes.pop(form.get("code", ""), None)
            if issued is None or self.clock() - issued[1] > cfg.code_lifetime:
                return oauth_error(400, "invalid_grant", "authorization code unknown, used or expired")
            if form.get("redirect_uri") != issued[0]:
                return oauth_error(400, "invalid_grant", "redirect_uri does not match")
            return JSONResponse(self._issue())
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            grant_id = next((g for g, grant in self.grants.items() if grant.refresh_token == token), None)
            if grant_id is None:
                return oauth_error(400, "invalid_grant", "refresh token unknown or already used")
            if cfg.refresh_window and self.tokens.left(self.grants[grant_id].access_token) > cfg.refresh_window:
                return oauth_error(401, "invalid_request", "Access token not expired")
            self.spent_refresh_tokens.add(token)
            self.refreshes += 1
            return JSONResponse(self._issue(grant_id))
        return oauth_error(400, "unsupported_grant_type")

    # -- state ------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "refreshes": self.refreshes,
            "token_requests": self.token_requests,
            "refused": dict(self.refused),
            "live_access_tokens": self.tokens.live(),
            "pending_codes": len(self.codes),
        }

    def reset(self) -> None:
        self.codes.clear()
        self.grants.clear()
        self.tokens.clear()
        self.spent_refresh_tokens.clear()
        self.refused.clear()
        self.refreshes = self.token_requests = 0


async def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True))
