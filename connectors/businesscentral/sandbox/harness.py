"""The Business Central sandbox's contract harness (connectors/sandboxkit/harness.py)."""

from __future__ import annotations

import uuid

import httpx

from connectors.businesscentral.sandbox.app import SandboxConfig, create_sandbox
from connectors.sandboxkit.harness import Harness, SystemEntry

CONFIG = SandboxConfig(client_secret="contract-secret", page_size=500)  # noqa: S106 - the sandbox's own


def _system(base_url: str, valid: bool) -> SystemEntry:
    entry = {
        "id": "bc",
        "kind": "businesscentral",
        "base_url": base_url,
        "credentials": {"client_secret": "env:CONTRACT_BC_SECRET"},
        "settings": {
            "tenant": CONFIG.tenant,
            "client_id": CONFIG.client_id,
            "environment": CONFIG.environment,
            "company": CONFIG.companies[0],
            "login_url": base_url,
        },
    }
    return entry, {"CONTRACT_BC_SECRET": CONFIG.client_secret if valid else "not-the-secret"}


def _seed_items(base_url: str, http: httpx.Client, skus: list[str]) -> None:
    http.post(f"{base_url}/sandbox/seed/items", json={"skus": skus}).raise_for_status()


def _webhooks(base_url: str, http: httpx.Client, delivery_url: str, secret: str) -> int:
    """A subscription to customers (held already: the contract receiver answers no handshake), a customer
    created, the batch sent at once: one POST, the subscription's clientState in its item."""
    http.post(f"{base_url}/sandbox/subscriptions",
              json={"notificationUrl": delivery_url, "entity": "customers", "clientState": secret}).raise_for_status()
    made = http.post(f"{base_url}/sandbox/seed", json={"entity": "customers", "records": [
        {"displayName": "Contract Customer", "email": "contract@example.com"}]})  # fmt: skip
    made.raise_for_status()
    http.post(f"{base_url}/sandbox/notify").raise_for_status()
    return 1


def _forge(body: bytes) -> bytes:
    """The clientState (BC's only proof) changed in the last item."""
    head, mark, tail = body.rpartition(b'"clientState": "')
    return head + mark + b"x" + tail


HARNESS = Harness(
    app=lambda: create_sandbox(CONFIG),
    system=_system,
    missing_id=lambda: str(uuid.uuid4()),
    seed_items=_seed_items,
    webhooks=_webhooks,
    forge=_forge,
)
