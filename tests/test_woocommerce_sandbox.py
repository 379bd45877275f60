"""The WooCommerce sandbox over real HTTP (uvicorn on loopback), driven by WooCommerceClient, with a tiny receiver
app for its webhooks; plus the WordPress/PHP encodings the sandbox signs with."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from connectors.woocommerce.client import Stock, WooCommerceClient
from connectors.woocommerce.errors import WooCommerceAuthError, WooCommerceNotFound, WooCommerceRequestError
from connectors.woocommerce.sandbox import create_sandbox, main
from connectors.woocommerce.sandbox.seed import place_order
from connectors.woocommerce.sandbox.store import ShopSettings, Store
from connectors.woocommerce.wordpress import php_json_encode, webhook_signature, wp_specialchars_decode
from gateway.config import Endpoint
from handlers.base import Incoming
from handlers.woocommerce import handle
from handlers.woocommerce import wp_specialchars_decode as receiver_decode
from tests.conftest import LiveServer, serve

pytestmark = pytest.mark.integration

KEY, SECRET = "ck_sandbox_0a1b2c3d", "cs_sandbox_4e5f6a7b"
HOOK_SECRET = "k0ppel&amp;s3cret-&#039;q&#039;"  # as WordPress stores it; WooCommerce signs with "k0ppel&s3cret-'q'"
SIGNING_KEY = b"k0ppel&s3cret-'q'"


@dataclass
class Receiver:
    """A webhook endpoint that records what arrives and answers the next status in `statuses` (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def endpoint(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        with self.lock:
            self.received.append((dict(request.headers), body))
            status = self.statuses.pop(0) if self.statuses else 200
        return PlainTextResponse("ok", status_code=status)


@pytest.fixture(autouse=True)
def no_threads_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert [t.name for t in threading.enumerate() if t not in before and t.is_alive()] == []


@pytest.fixture
def receiver() -> Iterator[tuple[LiveServer, Receiver]]:
    recorder = Receiver()
    live = serve(Starlette(routes=[Route("/hook", recorder.endpoint, methods=["POST"])]))
    yield live, recorder
    live.stop()


@pytest.fixture
def sandbox() -> Iterator[LiveServer]:
    live = serve(create_sandbox(consumer_key=KEY, consumer_secret=SECRET, seed_products=True))
    yield live
    live.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def client(http: httpx.Client, sandbox: LiveServer) -> WooCommerceClient:
    return WooCommerceClient(http, base_url=sandbox.url, consumer_key=KEY, consumer_secret=SECRET, sleep=lambda _: None)


def place(http: httpx.Client, sandbox: LiveServer, count: int = 1, seed: int = 7) -> list[int]:
    response = http.post(f"{sandbox.url}/sandbox/orders", json={"count": count, "seed": seed})
    assert response.status_code == 200, response.text
    return response.json()["orders"]


def deliveries(http: httpx.Client, sandbox: LiveServer, webhook_id: int, at_least: int) -> list[dict[str, Any]]:
    """The sandbox's delivery log for one webhook, pings excluded, once it holds `at_least` deliveries (long poll)."""
    params = {"webhook_id": webhook_id, "min": at_least + 1, "timeout": 5}  # + the ping
    entries = http.get(f"{sandbox.url}/sandbox/deliveries", params=params).json()["deliveries"]
    found = [e for e in entries if not e["ping"]]
    assert len(found) >= at_least, entries
    return found


# --- auth and paging --------------------------------------------------------------------------------


def test_missing_or_wrong_credentials_answer_401_with_woocommerce_codes(http, sandbox):
    missing = http.get(f"{sandbox.url}/wp-json/wc/v3/orders")
    assert missing.status_code == 401
    assert missing.json() == {"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources.",
                              "data": {"status": 401}}  # fmt: skip
    wrong = http.get(f"{sandbox.url}/wp-json/wc/v3/orders/1", auth=(KEY, "cs_wrong"))
    assert wrong.status_code == 401 and wrong.json()["code"] == "woocommerce_rest_authentication_error"
    unknown_key = http.post(f"{sandbox.url}/wp-json/wc/v3/products", auth=("ck_other", SECRET), json={})
    assert unknown_key.json()["code"] == "woocommerce_rest_cannot_create"
    by_query = http.get(f"{sandbox.url}/wp-json/wc/v3/orders", params={"consumer_key": KEY, "consumer_secret": SECRET})
    assert by_query.status_code == 200
    bad = WooCommerceClient(http, base_url=sandbox.url, consumer_key=KEY, consumer_secret="cs_wrong")
    with pytest.raises(WooCommerceAuthError) as caught:
        bad.get_order(1)
    assert caught.value.code == "woocommerce_rest_authentication_error" and "cs_wrong" not in str(caught.value)


def test_lists_page_with_wordpress_headers(http, sandbox, client):
    auth = (KEY, SECRET)
    response = http.get(f"{sandbox.url}/wp-json/wc/v3/products", params={"per_page": 3, "page": 2}, auth=auth)
    assert response.status_code == 200 and len(response.json()) == 3
    assert (response.headers["X-WP-Total"], response.headers["X-WP-TotalPages"]) == ("8", "3")
    links = response.headers.get_list("link")
    assert f'<{sandbox.url}/wp-json/wc/v3/products?per_page=3&page=1>; rel="prev"' in links
    assert f'<{sandbox.url}/wp-json/wc/v3/products?per_page=3&page=3>; rel="next"' in links
    too_many = http.get(f"{sandbox.url}/wp-json/wc/v3/products", params={"per_page": 101}, auth=auth)
    assert too_many.status_code == 400 and too_many.json()["code"] == "rest_invalid_param"
    assert too_many.json()["data"]["params"] == {
        "per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"
    }
    pages = list(client.pages("products", per_page=3))
    assert [len(p.items) for p in pages] == [3, 3, 2] and client.calls == 3
    assert len({p["id"] for page in pages for p in page.items}) == 8


def test_the_catalogues_product_images_are_served_as_pictures(client, http, sandbox):
    for product in client.products():
        [image] = product["images"]
        path = image["src"].split("/", 3)[3]  # seeded before the sandbox knew the address it is served at
        response = http.get(f"{sandbox.url}/{path}")
        assert response.status_code == 200, image["src"]
        assert response.headers["content-type"] == "image/png" and response.content.startswith(b"\x89PNG\r\n")
        assert response.headers["etag"]


def test_unknown_ids_and_routes_use_woocommerce_error_codes(client, http, sandbox):
    with pytest.raises(WooCommerceNotFound) as caught:
        client.get_order(999_999)
    assert caught.value.code == "woocommerce_rest_shop_order_invalid_id"
    response = http.get(f"{sandbox.url}/wp-json/wc/v3/nothing", auth=(KEY, SECRET))
    assert response.status_code == 404 and response.json()["code"] == "rest_no_route"


# --- webhooks -----------------------------------------------------------------------------------------


def test_order_placement_fires_a_webhook_signed_as_woocommerce_signs(client, http, sandbox, receiver):
    live, recorder = receiver
    hook = client.create_webhook(topic="order.created", delivery_url=f"{live.url}/hook", secret=HOOK_SECRET)
    assert "secret" not in hook and hook["hooks"] == ["woocommerce_new_order"]
    order_ids = place(http, sandbox, count=2)
    sent = deliveries(http, sandbox, hook["id"], 2)
    assert [(d["topic"], d["resource_id"], d["status_code"]) for d in sent] == [
        ("order.created", order_id, 200) for order_id in order_ids
    ]
    with recorder.lock:
        headers, body = recorder.received[1]
    expected = base64.b64encode(hmac.new(SIGNING_KEY, body, hashlib.sha256).digest()).decode()
    assert headers["x-wc-webhook-signature"] == expected
    assert headers["content-type"] == "application/json"
    assert re.fullmatch(r"WooCommerce/9\.\d+\.\d+ Hookshot \(WordPress/6\.\d+\.\d+\)", headers["user-agent"])
    assert headers["x-wc-webhook-source"] == f"{sandbox.url}/"
    assert (headers["x-wc-webhook-topic"], headers["x-wc-webhook-resource"], headers["x-wc-webhook-event"]) == (
        "order.created", "order", "created",
    )  # fmt: skip
    assert headers["x-wc-webhook-id"] == str(hook["id"])
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-wc-webhook-delivery-id"])
    # Encoded as PHP's json_encode: compact, escaped slashes, ASCII only; the REST JSON of the order.
    assert b'"_links":{"self":[{"href":"http:\\/\\/127.0.0.1' in body and body.isascii() and b": " not in body
    order = json.loads(body)
    assert order == client.get_order(order_ids[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", order["date_modified_gmt"])
    assert all(isinstance(line["price"], int | float) and re.fullmatch(r"-?\d+\.\d\d", line["total"])
               for line in order["line_items"])  # fmt: skip
    assert re.fullmatch(r"\d+\.\d\d", order["total"]) and order["status"] == "processing"


def test_koppels_receiver_accepts_what_the_sandbox_sends(client, http, sandbox, receiver):
    live, recorder = receiver
    hook = client.create_webhook(topic="order.created", delivery_url=f"{live.url}/hook", secret=HOOK_SECRET)
    (order_id,) = place(http, sandbox)
    deliveries(http, sandbox, hook["id"], 1)
    endpoint = Endpoint(id="shop", kind="woocommerce", secret=SecretStr(HOOK_SECRET))
    with recorder.lock:
        (ping_headers, ping_body), (headers, body) = recorder.received[:2]
    assert handle(Incoming("POST", ping_headers, {}, ping_body), endpoint).status == 200
    outcome = handle(Incoming("POST", headers, {}, body), endpoint)
    assert [(e.topic, e.resource_id) for e in outcome.events] == [("order.created", str(order_id))]


def test_creating_a_webhook_pings_it_unsigned(client, http, sandbox, receiver):
    live, recorder = receiver
    recorder.statuses = [500]
    hook = client.create_webhook(topic="product.updated", delivery_url=f"{live.url}/hook", secret="s")
    assert hook["status"] == "active"  # 201 whatever the ping got
    with recorder.lock:
        headers, body = recorder.received[0]
    assert body == f"webhook_id={hook['id']}".encode()
    assert not [name for name in headers if name.startswith("x-wc-")]
    assert headers["user-agent"].startswith("WooCommerce/") and headers["content-type"].startswith(
        "application/x-www-form-urlencoded"
    )
    log = http.get(f"{sandbox.url}/sandbox/deliveries").json()["deliveries"]
    assert [(d["ping"], d["status_code"], d["success"]) for d in log] == [(True, 500, False)]


def test_webhook_is_disabled_on_the_seventh_consecutive_failure(client, http, sandbox, receiver):
    live, recorder = receiver
    recorder.statuses = [200] + [500] * 2 + [200] + [500] * 7  # ping, 2 failures, a success, then 7 failures
    hook = client.create_webhook(topic="order.created", delivery_url=f"{live.url}/hook", secret="s")
    place(http, sandbox, count=10)
    sent = deliveries(http, sandbox, hook["id"], 10)
    assert [d["failure_count"] for d in sent] == [1, 2, 0, 1, 2, 3, 4, 5, 6, 6]  # success resets the count
    assert [d["webhook_status"] for d in sent] == ["active"] * 9 + ["disabled"]
    assert client.get_webhook(hook["id"])["status"] == "disabled"
    assert [h["id"] for h in client.webhooks(status="disabled")] == [hook["id"]]
    # No more deliveries: a second webhook's delivery of a later order arrives alone.
    witness = client.create_webhook(topic="order.created", delivery_url=f"{live.url}/hook", secret="s")
    place(http, sandbox, seed=8)
    deliveries(http, sandbox, witness["id"], 1)
    log = http.get(f"{sandbox.url}/sandbox/deliveries", params={"webhook_id": hook["id"]}).json()["deliveries"]
    assert len([d for d in log if not d["ping"]]) == 10
    assert client.enable_webhook(hook["id"])["status"] == "active"


def test_checkout_fires_order_updated_and_product_updated_for_the_stock_it_takes(client, http, sandbox, receiver):
    live, _ = receiver
    products = client.create_webhook(topic="product.updated", delivery_url=f"{live.url}/hook", secret="s")
    updates = client.create_webhook(topic="order.updated", delivery_url=f"{live.url}/hook", secret="s")
    (order_id,) = place(http, sandbox, seed=8)  # a variation whose parent keeps the stock, and a simple product
    order = client.get_order(order_id)
    assert [d["resource_id"] for d in deliveries(http, sandbox, updates["id"], 1)] == [order_id]
    managed = {client.get_stock(line["product_id"], variation_id=line["variation_id"] or None) for line in
               order["line_items"]}  # fmt: skip
    holders = {s.variation_id if s.manage_stock is True and s.variation_id else s.product_id for s in managed
               if s.manage_stock}  # fmt: skip
    assert len(holders) == 2
    assert {d["resource_id"] for d in deliveries(http, sandbox, products["id"], 2)} == holders


# --- stock, upserts, orders ---------------------------------------------------------------------------


def test_stock_updates_are_visible_via_get(client, http, sandbox, receiver):
    live, _ = receiver
    hook = client.create_webhook(topic="product.updated", delivery_url=f"{live.url}/hook", secret="s")
    variation = client.find_product_by_sku("KOP-TS-M")
    assert variation is not None and variation["type"] == "variation"
    client.set_stock_by_sku("KOP-TS-M", 3)
    assert client.get_stock(variation["parent_id"], variation_id=variation["id"]) == Stock(
        variation["parent_id"], variation["id"], "KOP-TS-M", True, 3, "instock"
    )
    assert client.stock_by_sku("kop-ts-m") == Stock(variation["parent_id"], variation["id"], "KOP-TS-M", True, 3,
                                                    "instock")  # fmt: skip
    mug = client.find_product_by_sku("KOP-TASSE-BL")
    client.set_stock(mug["id"], 0)
    assert client.get_product(mug["id"])["stock_status"] == "outofstock"
    shared = client.stock_by_sku("KOP-MOK-ROOD")  # the parent keeps the stock of its variations
    assert shared is not None and shared.manage_stock == "parent" and shared.stock_quantity == 90
    assert [d["resource_id"] for d in deliveries(http, sandbox, hook["id"], 2)] == [variation["id"], mug["id"]]


def test_upserts_create_then_update_and_duplicates_are_refused(client):
    created = client.upsert_product({"sku": "KOP-NEW", "name": "Mok \u201eDelft\u201c", "regular_price": "11.50"})
    assert created.created and created.record["price"] == "11.50"
    updated = client.upsert_product({"sku": "kop-new", "regular_price": "12.00"})
    assert not updated.created and updated.record["id"] == created.record["id"] and updated.record["price"] == "12.00"
    with pytest.raises(WooCommerceRequestError) as caught:
        client.create_product({"sku": "KOP-NEW", "name": "again"})
    assert (caught.value.status, caught.value.code) == (400, "product_invalid_sku")
    with pytest.raises(WooCommerceRequestError) as caught:
        client.create_product({"sku": "KOP-NUM", "regular_price": 12.5})  # WordPress wants money as a string
    assert caught.value.code == "rest_invalid_param"
    parent = client.find_product_by_sku("KOP-TS")
    size = client.upsert_variation(parent["id"], {"sku": "KOP-TS-XXL", "regular_price": "23.95",
                                                  "attributes": [{"name": "Maat", "option": "XXL"}]})  # fmt: skip
    assert size.created and size.record["id"] in client.get_product(parent["id"])["variations"]
    first = client.upsert_customer({"email": "Zoe@Example.com", "first_name": "Zo\u00eb"})
    second = client.upsert_customer({"email": "zoe@example.com", "last_name": "van den Berg"})
    assert first.created and not second.created and second.record["first_name"] == "Zo\u00eb"


def test_order_status_updates_and_gmt_filters(client, http, sandbox):
    before = datetime.now(UTC) - timedelta(minutes=1)
    order_ids = place(http, sandbox, count=3)
    assert [o["id"] for o in client.orders(modified_after=before, status="processing")] == order_ids
    assert list(client.orders(modified_after=datetime.now(UTC) + timedelta(hours=1))) == []
    line = client.get_order(order_ids[0])["line_items"][0]
    stock_before = client.stock_by_sku(line["sku"])
    done = client.update_order_status(order_ids[0], "cancelled")
    assert done["status"] == "cancelled"
    assert [o["id"] for o in client.orders(status="processing")] == order_ids[1:]
    stock_after = client.stock_by_sku(line["sku"])
    if stock_before is not None and stock_before.stock_quantity is not None:
        assert stock_after is not None and stock_after.stock_quantity >= stock_before.stock_quantity + line["quantity"]
    with pytest.raises(WooCommerceRequestError) as caught:
        client.update_order_status(order_ids[1], "shipped")
    assert caught.value.code == "rest_invalid_param"


def test_client_retries_through_injected_faults(client, http, sandbox):
    http.post(f"{sandbox.url}/sandbox/fail", json={"status": 503, "times": 2, "retry_after": 1})
    assert client.find_product_by_sku("KOP-BON-25") is not None
    assert client.calls == 3


def test_reset_empties_the_shop(client, http, sandbox):
    place(http, sandbox)
    assert http.post(f"{sandbox.url}/sandbox/reset").json() == {"reset": True}
    state = http.get(f"{sandbox.url}/sandbox/state").json()
    assert (state["orders"], state["products"], state["webhooks"]) == (0, 0, [])


def test_sample_orders_add_up_like_woocommerce_totals():
    store = Store(ShopSettings())
    rng = random.Random(3)
    orders = [place_order(store, rng) for _ in range(60)]
    cents = Decimal
    for order in orders:
        lines, fees, shipping = order["line_items"], order["fee_lines"], order["shipping_lines"]
        parts = lines + fees + shipping
        assert cents(order["total"]) == sum(cents(x["total"]) for x in parts) + cents(order["total_tax"])
        assert cents(order["total_tax"]) == sum(cents(x["total_tax"]) for x in parts)
        assert cents(order["discount_total"]) == sum(cents(li["subtotal"]) - cents(li["total"]) for li in lines)
        for line in lines:
            assert line["price"] == float(line["total"]) / line["quantity"]
    assert {order["billing"]["country"] for order in orders} == {"NL", "BE", "DE"}
    assert any(o["coupon_lines"] for o in orders) and any(o["fee_lines"] for o in orders)
    assert any(o["customer_id"] == 0 for o in orders) and any(o["customer_id"] for o in orders)
    assert any(o["billing"]["company"] for o in orders) and any(not o["billing"]["company"] for o in orders)
    assert any(line["variation_id"] for o in orders for line in o["line_items"])


def test_the_sandbox_has_a_command_line(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0 and "--consumer-secret" in capsys.readouterr().out


# --- WordPress and PHP encodings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ({"a": "x/y"}, b'{"a":"x\\/y"}'),
        ("J\u00f6rg \u201eBlau\u201c \U0001f389", b'"J\\u00f6rg \\u201eBlau\\u201c \\ud83c\\udf89"'),
        ("tab\t\x01\x7f", b'"tab\\t\\u0001\x7f"'),
        ([12.0, 12.356666666666667, 0.1, 1e-05, 1e16, 1e17, -0.0], b"[12,12.356666666666667,0.1,1.0e-5,"
         b"10000000000000000,1.0e+17,-0]"),
        ({"t": True, "n": None, "e": [], "o": {}}, b'{"t":true,"n":null,"e":[],"o":{}}'),
    ],
)  # fmt: skip
def test_php_json_encode_matches_php(value, encoded):
    assert php_json_encode(value) == encoded


@pytest.mark.parametrize(
    "stored", ["plain", "a&amp;b", "&lt;&gt;&quot;&#039;&#x27;", "&#0039;&#X0026;", "&amp;lt;", "&eacute;&nbsp;&#60"]
)
def test_secret_decoding_agrees_with_the_receiver(stored):
    assert wp_specialchars_decode(stored) == receiver_decode(stored)


def test_signature_matches_an_openssl_vector():
    # openssl dgst -sha256 -hmac "s3cr&t-'quote'-<x>" -binary < tests/fixtures/woocommerce_order_created.json | base64
    body = (Path(__file__).parent / "fixtures" / "woocommerce_order_created.json").read_bytes()
    stored = "s3cr&amp;t-&#039;quote&#39;-&lt;x&gt;"
    assert webhook_signature(body, stored) == "h7eeyJusgWpFJ/0hcV6leXIW8ibtPMTpg1AuPjH83lA="


@dataclass
class SlowReceiver(Receiver):
    """A receiver whose answers take 50 ms, counting the deliveries it holds at once."""

    open: int = 0
    most_open: int = 0

    async def endpoint(self, request: Request) -> PlainTextResponse:
        with self.lock:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        try:
            await asyncio.sleep(0.05)
            return await super().endpoint(request)
        finally:
            with self.lock:
                self.open -= 1


def test_deliveries_leave_one_at_a_time_unless_the_shop_is_set_to_send_several(client, http, sandbox):
    recorder = SlowReceiver()
    live = serve(Starlette(routes=[Route("/hook", recorder.endpoint, methods=["POST"])]))
    try:
        hook = client.create_webhook(topic="order.created", delivery_url=f"{live.url}/hook", secret=HOOK_SECRET)
        first = place(http, sandbox, count=6)
        deliveries(http, sandbox, hook["id"], 6)
        assert recorder.most_open == 1  # the default: WooCommerce's one queue runner
        answer = http.post(f"{sandbox.url}/sandbox/deliveries/concurrency", json={"concurrency": 4})
        assert answer.json() == {"concurrency": 4}
        recorder.most_open = 0
        second = place(http, sandbox, count=12, seed=8)
        sent = deliveries(http, sandbox, hook["id"], 18)
        assert 1 < recorder.most_open <= 4
        assert sorted(d["resource_id"] for d in sent) == sorted(first + second)  # each order delivered once
        assert all(d["status_code"] == 200 for d in sent)
    finally:
        live.stop()
