"""Koppel's OAuth set-up against the Exact Online sandbox, whose consent page approves at once.

Against the real Exact Online a person logs in and approves in a browser (`koppel connect exactonline`);
the sandbox answers the consent request with the redirect straight away, so the demo and the tests can
run the same code path — signed state, code exchange, tokens stored in Redis — without a browser.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import redis

from connectors.exactonline.auth import OAuthApp, authorize_url, complete_authorization, sign_state


def connect_sandbox(http: httpx.Client, app: OAuthApp, connection: redis.Redis, system_id: str) -> str:
    """Authorise `system_id` at the sandbox `app.base_url`; returns the system id the tokens are stored for."""
    state_secret = secrets.token_urlsafe(16)
    consent = http.get(
        authorize_url(app.base_url, app.client_id, app.redirect_uri, sign_state(state_secret, system_id))
    )
    if consent.status_code != 302:
        raise RuntimeError(f"the Exact sandbox's consent answered {consent.status_code}, not a redirect")
    query = parse_qs(urlsplit(consent.headers["location"]).query)
    return complete_authorization(
        http, app, connection, secret=state_secret, state=query["state"][0], code=query["code"][0]
    )
