"""Koppel's consent against the Asperion sandbox, whose authorize endpoint approves at once: the same code
path as `koppel connect` and the gateway's callback (signed state, code exchange, tokens in Redis)."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import redis

from connectors.asperion.auth import OAuthApp, authorize_url, store_authorization
from connectors.oauth import sign_state, verify_state


def connect_sandbox(http: httpx.Client, app: OAuthApp, connection: redis.Redis, system_id: str) -> str:
    """Authorise `system_id` at the sandbox `app.identity_url`; returns the system id the tokens are stored for."""
    secret = secrets.token_urlsafe(16)
    consent = http.get(authorize_url(app, sign_state(secret, system_id)))
    if consent.status_code != 302:
        raise RuntimeError(f"the Asperion sandbox's consent answered {consent.status_code}, not a redirect")
    query = parse_qs(urlsplit(consent.headers["location"]).query)
    system = verify_state(secret, query["state"][0])
    store_authorization(http, app, connection, system, query["code"][0])
    return system
