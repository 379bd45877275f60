"""Asperion OAuth2: the authorization-code consent, token storage and a refreshing httpx auth.

Asperion's identity server (`https://identity.asperion.nl`; sandbox `https://identity-sandbox.asperion.nl`)
runs the OAuth2 authorization-code flow [D: help.asperion.nl/api.aspx]. Unverified [U], built as the
usual OpenID Connect server answers (IdentityServer's conventions) and kept in this module only:

* the endpoints `{identity}/connect/authorize` and `{identity}/connect/token`;
* the scope `api offline_access` (a refresh token needs `offline_access`): a setting (`scope`);
* the client authenticates with `client_id`/`client_secret` form fields;
* the token answer `{access_token, token_type: "Bearer", expires_in: 3600, refresh_token}`, `expires_in` a
  number (a string is read too), and refresh tokens that rotate (single use: the newest is kept).

The token handling is connectors/tokens.py (shared with Exact Online): refreshing is serialised per system
by a Redis lock and re-reads the stored tokens under it, so two workers never spend one refresh token twice.
A token is refreshed `REFRESH_MARGIN` seconds before it expires, and once more when the API answers 401 to
it. Tokens live in Redis (`koppel:exact:tokens:{system}`, the OAuth token namespace) and never appear in
logs, reprs or messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import redis

from connectors import tokens
from connectors.asperion.errors import AsperionAuthError, AsperionResponseError, AsperionUnavailable
from connectors.tokens import AUTH_RETRY as AUTH_RETRY
from connectors.tokens import TOKEN_TIMEOUT as TOKEN_TIMEOUT
from connectors.tokens import Tokens as Tokens
from connectors.tokens import TokenStore as TokenStore

IDENTITY_URL = "https://identity.asperion.nl"
SANDBOX_IDENTITY_URL = "https://identity-sandbox.asperion.nl"
DEFAULT_SCOPE = "api offline_access"
AUTHORIZE_PATH = "/connect/authorize"
TOKEN_PATH = "/connect/token"  # noqa: S105 - a path, not a secret
REFRESH_MARGIN = 60.0

ENDPOINT = tokens.TokenEndpoint(
    title="Asperion",
    where="Asperion identity server",
    unavailable=AsperionUnavailable,
    refused=AsperionAuthError,
    malformed=AsperionResponseError,
    busy=AsperionUnavailable,
    lacking="access_token/refresh_token (is offline_access in the scope?)",
    default_lifetime=3600.0,
)
"""Asperion's identity server: `expires_in` a number (text read too), an hour when missing [U]."""

__all__ = [
    "AUTH_RETRY",
    "ENDPOINT",
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
    url = app.identity_url.rstrip("/") + AUTHORIZE_PATH
    return tokens.consent_url(url, app.client_id, app.redirect_uri, state, scope=app.scope)


exchange_code = ENDPOINT.exchange
"""Trade the single-use authorisation code of the consent's redirect for the first token pair."""
refresh_tokens = ENDPOINT.refresh
"""Spend a refresh token for a new pair; prefer `AsperionAuth.refresh`, which holds the lock."""


def store_authorization(
    http: httpx.Client, app: OAuthApp, conn: redis.Redis, system_id: str, code: str, *,
    clock: Callable[[], float] = time.time,
) -> Tokens:  # fmt: skip
    """The consent's last step: trade `code` for tokens and store them for the system."""
    return ENDPOINT.authorise(http, app, TokenStore(conn, system_id), code, clock=clock)


class AsperionAuth(tokens.RefreshingAuth):
    """Bearer auth for one Asperion system: refreshed `REFRESH_MARGIN` seconds before it expires, and once
    after a 401 (connectors/tokens.py). Synchronous only (it talks to Redis)."""

    endpoint = ENDPOINT
    default_margin = REFRESH_MARGIN
