"""The Squarespace sandbox's contract harness (connectors/sandboxkit/harness.py)."""

from __future__ import annotations

import httpx

from connectors.sandboxkit.harness import Harness, SystemEntry
from connectors.squarespace.client import SquarespaceClient
from connectors.squarespace.sandbox.app import SandboxConfig, create_sandbox

TOKEN = SandboxConfig.oauth_token


def _system(base_url: str, valid: bool) -> SystemEntry:
    entry = {"id": "sq", "kind": "squarespace", "base_url": base_url,
             "credentials": {"api_key": "env:CONTRACT_SQ_TOKEN"}}  # fmt: skip
    return entry, {"CONTRACT_SQ_TOKEN": TOKEN if valid else "sq_wrong"}


def _seed_items(base_url: str, http: httpx.Client, skus: list[str]) -> None:
    http.post(f"{base_url}/sandbox/products/seed", json={"skus": skus}).raise_for_status()


def _webhooks(base_url: str, http: httpx.Client, delivery_url: str, secret: str) -> int:
    """A subscription made through the API, its secret then set to the endpoint's (as an operator configures
    the secret of a subscription made by hand: Squarespace issues its own), then a checkout and a fulfilment."""
    site = SquarespaceClient(http, token=TOKEN, api_root=base_url)
    made = site.create_subscription(delivery_url, ["order.create", "order.update"])
    http.post(f"{base_url}/sandbox/subscriptions/{made['id']}/secret", json={"secret": secret}).raise_for_status()
    http.post(f"{base_url}/sandbox/products/seed", json={"skus": ["HOOK-1"]}).raise_for_status()
    placed = http.post(f"{base_url}/sandbox/orders", json={"count": 1, "seed": 3, "skus": ["HOOK-1"]})
    placed.raise_for_status()
    site.fulfil_order(placed.json()["orders"][0])
    return 2


HARNESS = Harness(
    app=lambda: create_sandbox(),
    system=_system,
    missing_id=lambda: "0123456789abcdef01234567",
    seed_items=_seed_items,
    webhooks=_webhooks,
)
