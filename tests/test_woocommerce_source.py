"""WooCommerce as a Source: a webhook's record is the record, except a variable product's variations
(ids only in the payload), which are read through the shop's API when the endpoint names its system."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from connectors.contract import Context
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.connector import WooCommerceSource
from connectors.woocommerce.sandbox import create_sandbox
from gateway.config import System
from gateway.envelope import Envelope, Event
from gateway.model import Product
from gateway.stack import serve

pytestmark = pytest.mark.integration

KEY, SECRET = "ck_source", "cs_source"


@pytest.fixture
def shop(rconn: redis.Redis) -> Iterator[tuple[WooCommerceSource, WooCommerceClient, dict]]:
    live = serve(create_sandbox(consumer_key=KEY, consumer_secret=SECRET, seed_products=True))
    try:
        with httpx.Client(timeout=10) as http:
            system = System.model_validate(
                {"id": "shop", "kind": "woocommerce", "base_url": live.url,
                 "credentials": {"consumer_key": "env:K", "consumer_secret": "env:S"}},
                context={"environ": {"K": KEY, "S": SECRET}},
            )  # fmt: skip
            client = WooCommerceClient(http, base_url=live.url, consumer_key=KEY, consumer_secret=SECRET)
            variable = next(p for p in client.products() if p["type"] == "variable")
            yield WooCommerceSource(system, Context(http=http, redis=rconn)), client, variable
    finally:
        live.stop()


def envelope(record: dict) -> Envelope:
    event = Event("product.updated", "product", str(record["id"]), f"k{record['id']}", record)
    return Envelope.wrap(event, source="woocommerce", endpoint="shop-hooks")


def test_a_variable_products_variations_are_read_through_the_api(shop):
    source, client, variable = shop
    assert variable["variations"] and all(isinstance(v, int) for v in variable["variations"])
    before = client.calls
    record = source.read(envelope(variable), "products")
    product = source.normalise("products", record)
    assert isinstance(product, Product) and product.type == "variable"
    expected = sorted(v["sku"] for v in client.variations(variable["id"]))
    assert sorted(v.sku for v in product.variants) == expected and expected
    assert client.calls == before + 1  # the test's own listing; the source used its own client


def test_without_the_system_the_record_is_the_payload(shop):
    source, _, variable = shop
    unlinked = WooCommerceSource(None, None)
    assert unlinked.read(envelope(variable), "products") == variable
    assert unlinked.normalise("products", variable).variants == []
    assert source.read(envelope({"id": 1, "type": "simple"}), "products") == {"id": 1, "type": "simple"}
