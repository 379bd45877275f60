"""The Exact Online sandbox's contract harness (connectors/sandboxkit/harness.py)."""

from __future__ import annotations

import uuid

import httpx
import redis

from connectors.exactonline.auth import OAuthApp
from connectors.exactonline.sandbox.app import create_sandbox
from connectors.exactonline.sandbox.consent import connect_sandbox
from connectors.sandboxkit.harness import Harness, SystemEntry

CLIENT_ID, CLIENT_SECRET = "koppel-sandbox", "sandbox-secret"
REDIRECT = "https://koppel.example/oauth/exact/callback"


def _system(base_url: str, valid: bool) -> SystemEntry:
    """Refused credentials: a system Koppel was never authorised for (no tokens stored)."""
    entry = {
        "id": "exact",
        "kind": "exactonline",
        "base_url": base_url,
        "credentials": {"client_secret": "env:CONTRACT_EXACT_SECRET"},
        "settings": {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "rate_limit": {"enabled": False}},
    }
    return entry, {"CONTRACT_EXACT_SECRET": CLIENT_SECRET if valid else "not-the-secret"}  # fmt: skip


def _connect(base_url: str, http: httpx.Client, connection: redis.Redis, system_id: str) -> None:
    connect_sandbox(http, OAuthApp(base_url, CLIENT_ID, CLIENT_SECRET, REDIRECT), connection, system_id)


def _seed_items(base_url: str, http: httpx.Client, skus: list[str]) -> None:
    http.post(f"{base_url}/sandbox/seed/items", json={"skus": skus}).raise_for_status()


HARNESS = Harness(
    app=lambda: create_sandbox(redirect_uris=(REDIRECT,), rate_limits=False),
    system=_system,
    missing_id=lambda: str(uuid.uuid4()),
    connect=_connect,
    seed_items=_seed_items,
)
