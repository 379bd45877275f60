"""Products WooCommerce → Exact Online, through both sandboxes over real HTTP (uvicorn) with real Redis:
simple, virtual and variable products, variations on their own, update field groups, item groups,
pictures, prices, EAN, filters and publication, paging of variations — and an order with a new item's
SKU booking afterwards."""

from __future__ import annotations

import base64
import logging
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from connectors.exactonline.sandbox import ExactSandbox
from connectors.exactonline.sandbox.entities import SPECS
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox as woo_sandbox
from connectors.woocommerce.sandbox import seed
from gateway.config import parse_config
from gateway.envelope import Envelope, Event
from gateway.stack import LiveServer, serve
from tests import pairs_support as pairs
from workers import runtime
from workers.jobs import run_event
from workers.ledger import EARLIER_ATTEMPT

pytestmark = pytest.mark.integration

DIVISION = 1234567
WOO_KEY, WOO_SECRET = "ck_products", "cs_products"
ENV = pairs.ENV | {"WC_SECRET": "s", "WC_KEY": WOO_KEY, "WC_CONSUMER_SECRET": WOO_SECRET}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
TABLES = {
    "vat_codes": {"entries": {"21": "2", "reduced-rate": "1"}, "default": "2"},
    "tax_rates": {"entries": {"standard": "21", "reduced-rate": "9"}},
    "features": {"entries": {"Material": "FreeTextField_01"}},
    "attributes": {"entries": {"Colour": "FreeTextField_02"}},
    "item_groups": {"entries": {"sale": "OUTLET"}},
}


@dataclass
class Env:
    exact: LiveServer
    woo: LiveServer
    sandbox: ExactSandbox
    shop_sandbox: Any
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime
    shop: WooCommerceClient

    @property
    def integration(self) -> Any:
        return self.rt.config.integrations[0]

    def upload(self, name: str, content: bytes = PNG, content_type: str = "image/png") -> str:
        body = {"name": name, "content": base64.b64encode(content).decode(), "content_type": content_type}
        return str(self.http.post(f"{self.woo.url}/sandbox/media", json=body).raise_for_status().json()["src"])

    def event(self, record: dict[str, Any]) -> dict[str, Any]:
        """The products flow on a product.updated delivery carrying `record` (as WooCommerce sends it)."""
        event = Event("product.updated", "product", str(record["id"]), f"k{uuid.uuid4()}", record)
        envelope = Envelope.wrap(event, source="woocommerce", endpoint="webhooks")
        return run_event(self.rt, self.integration, envelope).as_dict()

    def sync(self, product_id: int) -> dict[str, Any]:
        return self.event(self.shop.get_product(product_id))

    def items(self) -> dict[str, dict[str, Any]]:
        return {r["Code"]: r for r in self.sandbox.store.rows(DIVISION, "logistics/Items")}

    def groups(self) -> dict[str, dict[str, Any]]:
        return {r["Code"]: r for r in self.sandbox.store.rows(DIVISION, "logistics/ItemGroups")}

    def edit_item(self, code: str, fields: dict[str, Any]) -> None:
        """What a bookkeeper does in Exact."""
        item = self.items()[code]
        body = {"entity": "logistics/Items", "id": item["ID"], "fields": fields}
        self.http.post(f"{self.exact.url}/sandbox/update", json=body).raise_for_status()

    def exact_calls(self, name: str) -> int:
        return self.sandbox.counters[name]

    def shop_calls(self, fragment: str) -> int:
        counts = self.shop_sandbox.counters.by_endpoint()
        return sum(n for name, n in counts.items() if fragment in name)

    def hoodie(self, sizes: tuple[str, ...] = ("M", "L"), **extra: Any) -> dict[str, Any]:
        """A variable product (attributes Colour and Size build the variations, Material is a feature)."""
        parent = self.shop.create_product({
            "name": "Hoodie", "type": "variable", "description": "<p>Warm &amp; <b>soft</b>.</p>",
            "short_description": "The hoodie", "categories": [{"id": 21, "name": "Hoodies", "slug": "hoodies"}],
            "attributes": [
                {"name": "Colour", "options": ["Blue"], "variation": True},
                {"name": "Size", "options": list(sizes), "variation": True},
                {"name": "Material", "options": ["Cotton", "Polyester"], "variation": False},
            ],
            "images": [{"src": self.upload("hoodie.png")}], **extra,
        })  # fmt: skip
        for size in sizes:
            self.shop.create_variation(parent["id"], {
                "sku": f"HOOD-BLUE-{size}", "regular_price": "48.40",
                "attributes": [{"name": "Colour", "option": "Blue"}, {"name": "Size", "option": size}],
            })  # fmt: skip
        return self.shop.get_product(parent["id"])


def make_config(exact_url: str, woo_url: str, settings: dict[str, Any], tables: dict[str, Any]) -> Any:
    return parse_config(
        {
            "endpoints": [{"id": "webhooks", "kind": "woocommerce", "secret": "env:WC_SECRET", "system": "shop"}],
            "systems": [
                pairs.exact_system(exact_url, picture_max_bytes=2000, rate_limit={"enabled": False}),
                {"id": "shop", "kind": "woocommerce", "base_url": woo_url,
                 "credentials": {"consumer_key": "env:WC_KEY", "consumer_secret": "env:WC_CONSUMER_SECRET"}},
            ],
            "integrations": [
                {"id": "shop-to-exact", "source": "webhooks", "target": "exact", "flows": ["orders", "products"],
                 "settings": {"prices_include_tax": True, **settings}, "tables": tables},
            ],
        },
        environ=ENV,
    )  # fmt: skip


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    given = getattr(request, "param", {})
    with pairs.exact_served() as (exact, sandbox):
        woo_app = woo_sandbox(consumer_key=WOO_KEY, consumer_secret=WOO_SECRET)
        woo = serve(woo_app, name="shop")
        try:
            with httpx.Client(timeout=10) as http:
                config = make_config(exact.url, woo.url, given.get("settings", {}), given.get("tables", TABLES))
                with pairs.installed(config, rconn, monkeypatch) as rt:
                    pairs.authorise_exact(http, exact, rconn)
                    shop = WooCommerceClient(http, base_url=woo.url, consumer_key=WOO_KEY, consumer_secret=WOO_SECRET)
                    yield Env(exact, woo, sandbox, woo_app.state.sandbox, http, rconn, rt, shop)
        finally:
            woo.stop()


def simple(env: Env, **fields: Any) -> dict[str, Any]:
    body = {"name": "Mug", "sku": "MUG-1", "regular_price": "12.10", "global_unique_id": "8712345678906",
            "categories": [{"id": 30, "name": "Kitchen & Dining", "slug": "kitchen-dining"}],
            "images": [{"src": env.upload("mug.png")}]} | fields  # fmt: skip
    return env.shop.create_product(body)


# -- simple and virtual products -------------------------------------------------------------------------


def test_a_simple_product_becomes_an_item_with_group_price_barcode_and_picture(env):
    product = simple(env)
    result = env.sync(product["id"])
    assert result["outcome"] == "created"
    item = env.items()["MUG-1"]
    assert item["Description"] == "Mug"
    assert item["Barcode"] == "8712345678906"
    assert item["StandardSalesPrice"] == 10.0  # 12.10 incl. 21 % (the shop's prices include tax)
    assert item["IsStockItem"] is True and item["SalesVatCode"] == "2"
    assert env.groups()["KITCHEN-DINING"]["Description"] == "Kitchen & Dining"
    assert item["ItemGroup"] == env.groups()["KITCHEN-DINING"]["ID"] and item["ItemGroupCode"] == "KITCHEN-DINING"
    assert item["PictureName"].endswith("mug.png")
    picture = env.http.get(f"{env.exact.url}{item['PictureUrl']}")
    assert picture.content == PNG and picture.headers["content-type"] == "image/png"
    assert env.conn.hget("koppel:cache:exact:items", "MUG-1").decode() == item["ID"]  # what orders read


def test_an_order_with_a_new_items_sku_books_after_the_product_travelled(env):
    env.sync(simple(env)["id"])
    env.http.post(f"{env.exact.url}/sandbox/seed/items", json={"skus": ["SHIPPING", "FEE", "DISCOUNT"]})
    order = seed.place_order(env.shop_sandbox.store, random.Random(3))
    assert {line["sku"] for line in order["line_items"]} == {"MUG-1"}
    event = Event("order.created", "order", str(order["id"]), f"k{order['id']}", env.shop.get_order(order["id"]))
    result = run_event(env.rt, env.integration, Envelope.wrap(event, source="woocommerce", endpoint="webhooks"))
    assert result.outcome == "created"
    [booked] = env.sandbox.store.rows(DIVISION, "salesorder/SalesOrders")
    lines = env.sandbox.store.lines_of(DIVISION, SPECS["salesorder/SalesOrders"], booked["OrderID"])
    assert env.items()["MUG-1"]["ID"] in {line["Item"] for line in lines}


def test_a_virtual_product_is_not_a_stock_item(env):
    product = simple(env, name="Gift card", sku="GIFT-25", virtual=True, categories=[], images=[])
    assert env.sync(product["id"])["outcome"] == "created"
    item = env.items()["GIFT-25"]
    assert item["IsStockItem"] is False and item.get("PictureUrl") is None
    assert item["ItemGroupCode"] == "UNCATEGORIZED"  # WooCommerce puts a product in no category in its default one


def test_the_ean_is_read_from_a_plugins_meta_key(env):
    product = simple(env, global_unique_id="", meta_data=[{"key": "_wpm_gtin_code", "value": "4006381333931"}])
    env.sync(product["id"])
    assert env.items()["MUG-1"]["Barcode"] == "4006381333931"


@pytest.mark.parametrize("env", [{"settings": {"item_price_includes_tax": True}}], indirect=True)
def test_the_item_price_can_include_tax(env):
    env.sync(simple(env)["id"])
    assert env.items()["MUG-1"]["StandardSalesPrice"] == 12.1


@pytest.mark.parametrize("env", [{"tables": {}}], indirect=True)
def test_a_price_that_needs_a_rate_nobody_gave_fails_naming_the_table(env):
    with pytest.raises(Exception, match="tax_rates"):
        env.sync(simple(env)["id"])
    assert "MUG-1" not in env.items()


# -- variable products and variations --------------------------------------------------------------------


def test_each_variation_is_an_item_the_variable_parent_is_not(env):
    hoodie = env.hoodie()
    result = env.sync(hoodie["id"])
    assert (result["outcome"], result["reason"]) == ("created", "2 item(s), 2 created")
    items = env.items()
    assert set(items) == {"HOOD-BLUE-M", "HOOD-BLUE-L"}
    item = items["HOOD-BLUE-L"]
    assert item["Description"] == "Hoodie \u2013 Blue, L"
    assert item["ExtraDescription"] == "The hoodie"
    assert item["Notes"] == "Warm & soft.\n\nMaterial: Cotton, Polyester"
    assert (item["FreeTextField_01"], item["FreeTextField_02"]) == ("Cotton, Polyester", "Blue")
    assert item["ItemGroupCode"] == "HOODIES" and item["StandardSalesPrice"] == 40.0
    assert item["PictureName"].endswith("hoodie.png")  # the parent's image: the variations have none


def test_a_variation_sent_on_its_own_is_written_with_its_parents_name_and_group(env):
    hoodie = env.hoodie()
    env.sync(hoodie["id"])
    variation_id = hoodie["variations"][1]
    env.shop.update_variation(hoodie["id"], variation_id, {"regular_price": "60.50"})
    result = env.sync(variation_id)  # GET /products/{id} of a variation: type "variation", no categories
    assert (result["outcome"], result["number"]) == ("updated", "HOOD-BLUE-L")
    item = env.items()["HOOD-BLUE-L"]
    assert item["Description"] == "Hoodie \u2013 Blue, L" and item["ItemGroupCode"] == "HOODIES"
    assert item["StandardSalesPrice"] == 50.0
    assert len(env.items()) == 2


@pytest.mark.parametrize("env", [{"settings": {"product_filter": "variants[0].options.Size != 'XL'"}}], indirect=True)
def test_a_filter_that_leaves_out_a_variation_skips_only_that_item(env):
    hoodie = env.hoodie(sizes=("L", "XL"))
    result = env.sync(hoodie["id"])
    assert result["outcome"] == "created"
    assert "HOOD-BLUE-XL: left out by settings.product_filter" in result["reason"]
    assert set(env.items()) == {"HOOD-BLUE-L"}
    alone = env.sync(hoodie["variations"][1])
    assert (alone["outcome"], alone["reason"]) == ("skipped", "left out by settings.product_filter")


def test_variations_are_read_page_by_page_and_one_deleted_meanwhile_is_not_written(env):
    sizes = tuple(f"S{n:03d}" for n in range(102))
    hoodie = env.hoodie(sizes=sizes)
    assert len(hoodie["variations"]) == 102
    # deleted in the shop after the webhook was built: the payload still lists its id
    env.shop_sandbox.store.delete_product(hoodie["variations"][5], force=True, variation_of=hoodie["id"])
    before = env.shop_calls("variations")
    result = env.event(hoodie)
    assert result["reason"] == "101 item(s), 101 created"
    assert len(env.items()) == 101 and "HOOD-BLUE-S005" not in env.items()
    assert env.shop_calls("variations") - before == 2  # two pages of at most 100


# -- publication -------------------------------------------------------------------------------------------


def test_a_draft_product_does_not_travel_until_it_is_published(env):
    product = simple(env, status="draft")
    result = env.sync(product["id"])
    assert (result["outcome"], result["reason"]) == (
        "skipped", "not published (settings.sync_unpublished_products = false)"
    )  # fmt: skip
    assert env.items() == {}
    env.shop.update_product(product["id"], {"status": "publish"})
    assert env.sync(product["id"])["outcome"] == "created"


@pytest.mark.parametrize("env", [{"settings": {"sync_unpublished_products": True}}], indirect=True)
def test_unpublished_products_travel_when_configured(env):
    assert env.sync(simple(env, status="private")["id"])["outcome"] == "created"


# -- updates ---------------------------------------------------------------------------------------------------


def test_an_update_keeps_what_the_bookkeeper_enriched_by_default(env):
    product = simple(env, short_description="Stoneware", description="<p>Big.</p>")
    env.sync(product["id"])
    env.edit_item("MUG-1", {"Notes": "Supplier: Potter & Co", "ExtraDescription": "Checked by Anna", "Unit": "box"})
    env.shop.update_product(product["id"], {"name": "Mug XL", "regular_price": "14.52", "description": "<p>Huge</p>"})
    puts = env.exact_calls("PUT logistics/Items")
    assert env.sync(product["id"])["outcome"] == "updated"
    item = env.items()["MUG-1"]
    assert (item["Description"], item["StandardSalesPrice"]) == ("Mug XL", 12.0)
    assert (item["Notes"], item["ExtraDescription"], item["Unit"]) == (
        "Supplier: Potter & Co", "Checked by Anna", "box"
    )  # fmt: skip
    assert env.exact_calls("PUT logistics/Items") == puts + 1


@pytest.mark.parametrize(
    "env", [{"settings": {"product_update": {"long_description": True, "prices": False}}}], indirect=True
)
def test_the_update_switches_choose_the_groups_an_update_sends(env):
    product = simple(env, description="<p>Big.</p>")
    env.sync(product["id"])
    env.edit_item("MUG-1", {"Notes": "typed in Exact", "StandardSalesPrice": 9.5})
    env.shop.update_product(product["id"], {"regular_price": "30.25"})
    assert env.sync(product["id"])["outcome"] == "skipped"  # only prices changed, and they are switched off
    assert (env.items()["MUG-1"]["Notes"], env.items()["MUG-1"]["StandardSalesPrice"]) == ("typed in Exact", 9.5)
    env.shop.update_product(product["id"], {"description": "<p>Bigger.</p>"})
    assert env.sync(product["id"])["outcome"] == "updated"
    item = env.items()["MUG-1"]
    assert (item["Notes"], item["StandardSalesPrice"]) == ("Bigger.", 9.5)


def test_a_save_that_changes_nothing_the_target_takes_costs_no_call(env):
    """WooCommerce saves a product for many reasons (its stock moves with every order): an update that
    would send what Koppel last sent is not sent."""
    product = simple(env, manage_stock=True, stock_quantity=10)
    env.sync(product["id"])
    puts = env.exact_calls("PUT logistics/Items")
    env.shop.update_product(product["id"], {"stock_quantity": 9})
    result = env.sync(product["id"])
    assert (result["outcome"], result["calls"]) == ("skipped", 0), result
    assert "unchanged since Koppel last sent it" in result["reason"]
    env.shop.update_product(product["id"], {"name": "Mug, blue"})
    assert env.sync(product["id"])["outcome"] == "updated"
    assert env.exact_calls("PUT logistics/Items") == puts + 1
    assert env.items()["MUG-1"]["Description"] == "Mug, blue"


@pytest.mark.parametrize("env", [{"settings": {"product_update": {"image": True}}}], indirect=True)
def test_an_unchanged_image_is_not_uploaded_again_a_changed_one_is(env, monkeypatch):
    product = simple(env)
    env.sync(product["id"])
    stored = dict(env.sandbox.store.pictures)
    uploads: list[str] = []
    original = env.sandbox.store.update

    def spy(division: int, path: str, key: str, body: dict[str, Any]) -> None:
        if "Picture" in body:
            uploads.append(key)
        original(division, path, key, body)

    monkeypatch.setattr(env.sandbox.store, "update", spy)
    # later changes to the product (new versions of it, so the flow runs), its image as it was
    env.shop.update_product(product["id"], {"name": "Mug, dishwasher-safe"})
    assert env.sync(product["id"])["outcome"] == "updated"
    assert uploads == [] and env.sandbox.store.pictures == stored
    red = PNG[:-8] + b"\x00" * 8
    env.upload("mug.png", red)  # the same URL, new bytes (a new ETag)
    env.shop.update_product(product["id"], {"name": "Mug, red"})
    env.sync(product["id"])
    assert len(uploads) == 1
    [(_, content)] = env.sandbox.store.pictures.values()
    assert content == red


def test_images_are_left_alone_on_update_by_default(env):
    product = simple(env)
    env.sync(product["id"])
    env.upload("mug.png", PNG + b"changed")
    env.sync(product["id"])
    [(_, content)] = env.sandbox.store.pictures.values()
    assert content == PNG


def test_an_image_over_the_size_cap_is_left_out_with_one_log_line(env, caplog):
    big = env.upload("poster.png", PNG + b"\x00" * 5000)
    product = simple(env, images=[{"src": big}])
    with caplog.at_level(logging.WARNING, logger="koppel.pictures"):
        assert env.sync(product["id"])["outcome"] == "created"
    assert env.items()["MUG-1"].get("PictureUrl") is None
    [record] = caplog.records
    assert "larger than 2000 bytes (systems.exact.settings.picture_max_bytes)" in record.getMessage()
    assert record.exc_info is None


def test_an_image_that_is_not_a_picture_is_left_out(env, caplog):
    page = env.upload("index.html", b"<html></html>", "text/html")
    with caplog.at_level(logging.WARNING, logger="koppel.pictures"):
        env.sync(simple(env, images=[{"src": page}])["id"])
    assert "text/html is not a picture Exact Online takes" in caplog.text
    assert env.items()["MUG-1"].get("PictureUrl") is None


# -- item groups -------------------------------------------------------------------------------------------------


def test_item_groups_are_created_once_and_mapped_through_the_table(env):
    env.sync(simple(env, categories=[{"id": 9, "name": "Sale", "slug": "sale"}])["id"])
    env.sync(simple(env, sku="MUG-2", categories=[{"id": 9, "name": "Sale", "slug": "sale"}])["id"])
    assert set(env.groups()) == {"OUTLET"}
    assert env.items()["MUG-2"]["ItemGroupCode"] == "OUTLET"
    assert env.exact_calls("POST logistics/ItemGroups") == 1
    assert env.exact_calls("GET logistics/ItemGroups") == 1  # the second product found it in the cache


def test_an_existing_item_group_is_used(env):
    body = {"entity": "logistics/ItemGroups", "records": [{"Code": "KITCHEN-DINING", "Description": "Keuken"}]}
    [group_id] = env.http.post(f"{env.exact.url}/sandbox/seed", json=body).raise_for_status().json()["ids"]
    env.sync(simple(env)["id"])
    assert env.items()["MUG-1"]["ItemGroup"] == group_id
    assert env.groups()["KITCHEN-DINING"]["Description"] == "Keuken"


# -- a worker killed after the item's POST -----------------------------------------------------------------


class Killed(BaseException):
    """The worker process dying: no Koppel error, nothing after it runs."""


def test_an_item_created_just_before_the_worker_died_is_logged_created_by_the_retry(env, monkeypatch):
    product = simple(env)
    target = env.rt.target("exact")
    real = target.create_product

    def created_then_killed(payload: Any) -> str:
        monkeypatch.setattr(target, "create_product", real)
        real(payload)
        raise Killed  # Exact has the item; Koppel's cache and the activity never hear of it

    monkeypatch.setattr(target, "create_product", created_then_killed)
    with pytest.raises(Killed):
        env.sync(product["id"])
    item = env.items()["MUG-1"]

    retry = env.sync(product["id"])
    assert (retry["outcome"], retry["target_id"]) == ("created", item["ID"]), retry
    assert retry["reason"] == EARLIER_ATTEMPT
    assert [r["ID"] for r in env.sandbox.store.rows(DIVISION, "logistics/Items") if r["Code"] == "MUG-1"] == [
        item["ID"]]  # fmt: skip
    assert env.conn.hget("koppel:cache:exact:items", "MUG-1").decode() == item["ID"]
    again = env.sync(product["id"])
    assert (again["outcome"], again["calls"]) == ("skipped", 0)
