"""The Winstore sandbox's contract harness (connectors/sandboxkit/harness.py)."""

from __future__ import annotations

import httpx

from connectors.sandboxkit.harness import Harness, SystemEntry
from connectors.winstore.sandbox.app import PREFIX, create_sandbox

USER, PASSWORD = "koppel", "contract-secret"


def _system(base_url: str, valid: bool) -> SystemEntry:
    entry = {
        "id": "winstore",
        "kind": "winstore",
        "base_url": base_url + PREFIX,
        "credentials": {"username": "env:CONTRACT_WS_USER", "password": "env:CONTRACT_WS_PASSWORD"},
        "settings": {"branch": 1, "channel": "webshop", "warehouses": [1]},
    }
    return entry, {"CONTRACT_WS_USER": USER, "CONTRACT_WS_PASSWORD": PASSWORD if valid else "wrong"}


def seed_items(base_url: str, http: httpx.Client, skus: list[str]) -> None:
    """Articles with these article numbers (5 in stock in warehouse 1), as a user creates them in Winstore."""
    for start in range(0, len(skus), 500):
        articles = [{"ArtNr": sku, "Description": f"Article {sku}", "SalesPrice": "12.10", "stock": {"1": 5}}
                    for sku in skus[start : start + 500]]  # fmt: skip
        http.post(f"{base_url}/sandbox/articles", json={"articles": articles}).raise_for_status()


HARNESS = Harness(
    app=lambda: create_sandbox(username=USER, password=PASSWORD),
    system=_system,
    missing_id=lambda: "99999999",
    seed_items=seed_items,
)
