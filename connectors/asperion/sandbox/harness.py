"""The Asperion sandbox's contract harness (connectors/sandboxkit/harness.py)."""

from __future__ import annotations

import httpx
import redis

from connectors.asperion.auth import OAuthApp
from connectors.asperion.sandbox.app import SandboxConfig, create_sandbox
from connectors.asperion.sandbox.consent import connect_sandbox
from connectors.sandboxkit.harness import Harness, SystemEntry

CLIENT_ID, CLIENT_SECRET = SandboxConfig.client_id, SandboxConfig.client_secret
REDIRECT = "https://koppel.example/oauth/asperion/callback"
TENANT = SandboxConfig.tenants[0]


def system_entry(base_url: str, valid: bool, *, system_id: str = "asperion") -> SystemEntry:
    """Refused credentials: a system Koppel was never authorised for (no tokens stored), with a wrong secret."""
    entry = {
        "id": system_id,
        "kind": "asperion",
        "base_url": base_url,
        "credentials": {"client_secret": "env:CONTRACT_ASPERION_SECRET"},
        "settings": {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "tenant_id": TENANT, "identity_url": base_url},
    }
    return entry, {"CONTRACT_ASPERION_SECRET": CLIENT_SECRET if valid else "not-the-secret"}


def connect(base_url: str, http: httpx.Client, connection: redis.Redis, system_id: str) -> None:
    connect_sandbox(http, OAuthApp(base_url, CLIENT_ID, CLIENT_SECRET, REDIRECT), connection, system_id)


def seed_items(base_url: str, http: httpx.Client, skus: list[str]) -> None:
    for start in range(0, len(skus), 500):
        http.post(f"{base_url}/sandbox/seed/articles", json={"skus": skus[start : start + 500]}).raise_for_status()


HARNESS = Harness(
    app=create_sandbox,
    system=system_entry,
    missing_id=lambda: "99999999",
    connect=connect,
    seed_items=seed_items,
)
