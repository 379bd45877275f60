"""The WooCommerce sandbox's contract harness (connectors/sandboxkit/harness.py)."""

from __future__ import annotations

import httpx

from connectors.sandboxkit.harness import Harness, SystemEntry
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox.app import create_sandbox

KEY, SECRET = "ck_contract", "cs_contract"


def _system(base_url: str, valid: bool) -> SystemEntry:
    entry = {
        "id": "shop",
        "kind": "woocommerce",
        "base_url": base_url,
        "credentials": {"consumer_key": "env:CONTRACT_WC_KEY", "consumer_secret": "env:CONTRACT_WC_SECRET"},
    }
    return entry, {"CONTRACT_WC_KEY": KEY, "CONTRACT_WC_SECRET": SECRET if valid else "cs_wrong"}  # fmt: skip


def _seed_items(base_url: str, http: httpx.Client, skus: list[str]) -> None:
    shop = WooCommerceClient(http, base_url=base_url, consumer_key=KEY, consumer_secret=SECRET)
    for start in range(0, len(skus), 100):
        chunk = skus[start : start + 100]
        shop.batch("products", create=[{"name": sku, "sku": sku, "regular_price": "1.00"} for sku in chunk])


def _webhooks(base_url: str, http: httpx.Client, delivery_url: str, secret: str) -> int:
    """A webhook created through the API (WooCommerce pings it), then a checkout: order.created and
    order.updated, signed as WooCommerce signs them."""
    shop = WooCommerceClient(http, base_url=base_url, consumer_key=KEY, consumer_secret=SECRET)
    for topic in ("order.created", "order.updated"):
        shop.create_webhook(topic=topic, delivery_url=delivery_url, secret=secret)
    http.post(f"{base_url}/sandbox/orders", json={"count": 1, "status": "processing", "seed": 3}).raise_for_status()
    return 4  # two pings, two deliveries


HARNESS = Harness(
    app=lambda: create_sandbox(consumer_key=KEY, consumer_secret=SECRET, seed_products=True),
    system=_system,
    missing_id=lambda: "987654",
    seed_items=_seed_items,
    webhooks=_webhooks,
)
