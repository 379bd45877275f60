"""WooCommerceClient against respx-faked WooCommerce responses: paging, retries, error mapping, secrets, upserts."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.woocommerce.client import Retry, Stock, WooCommerceClient
from connectors.woocommerce.errors import (
    RateLimited,
    SkuConflict,
    WooCommerceAuthError,
    WooCommerceConfigError,
    WooCommerceNotFound,
    WooCommerceRequestError,
    WooCommerceResponseError,
    WooCommerceUnavailable,
)
from gateway.errors import PermanentError, TransientError

BASE = "https://shop.example"
API = f"{BASE}/wp-json/wc/v3"
KEY = "ck_4f1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5"
SECRET = "cs_9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291817"
BASIC = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
NOW = 1_795_000_000.0


class Woo:
    """Builders for WooCommerce's REST responses (PLATFORMS.md §1.3-1.4)."""

    @staticmethod
    def page(items: list[dict[str, Any]], *, total: int | None = None, pages: int | None = None) -> httpx.Response:
        headers = {}
        if total is not None:
            headers["X-WP-Total"] = str(total)
        if pages is not None:
            headers["X-WP-TotalPages"] = str(pages)
        return httpx.Response(200, json=items, headers=headers)

    @staticmethod
    def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
        body = {"code": code, "message": message, "data": {"status": status}}
        return httpx.Response(status, json=body, headers=headers)

    @staticmethod
    def product(product_id: int, sku: str, **fields: Any) -> dict[str, Any]:
        return {"id": product_id, "sku": sku, "type": "simple", "parent_id": 0, "manage_stock": False,
                "stock_quantity": None, "stock_status": "instock", **fields}  # fmt: skip


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def http() -> Any:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def client(http: httpx.Client, slept: list[float]) -> WooCommerceClient:
    return WooCommerceClient(
        http, base_url=BASE, consumer_key=KEY, consumer_secret=SECRET, sleep=slept.append, jitter=lambda: 1.0,
        clock=lambda: NOW, retry=Retry(attempts=4, base=0.5, cap=10.0, max_wait=30.0),
    )  # fmt: skip


@pytest.fixture
def woo() -> Any:
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        yield mock


# --- paging ---------------------------------------------------------------------------------------


def test_pages_through_three_pages_lazily(client, woo):
    products = [Woo.product(i, f"SKU-{i}") for i in range(1, 6)]

    def page(request: httpx.Request) -> httpx.Response:
        number, size = int(request.url.params["page"]), int(request.url.params["per_page"])
        return Woo.page(products[(number - 1) * size : number * size], total=5, pages=3)

    route = woo.get("/products").mock(side_effect=page)
    records = client.products(per_page=2, status="publish")
    assert next(records)["id"] == 1
    assert route.call_count == 1  # nothing fetched ahead of the caller
    assert [p["id"] for p in records] == [2, 3, 4, 5]
    assert route.call_count == 3
    assert [dict(c.request.url.params) for c in route.calls] == [
        {"status": "publish", "per_page": "2", "page": str(n)} for n in (1, 2, 3)
    ]
    assert client.calls == 3


def test_page_objects_carry_the_paging_headers(client, woo):
    woo.get("/orders").mock(side_effect=[Woo.page([{"id": 1}], total=2, pages=2), Woo.page([{"id": 2}], total=2,
                                                                                            pages=2)])  # fmt: skip
    pages = list(client.pages("orders", per_page=1))
    assert [(p.number, p.total, p.total_pages, [r["id"] for r in p.items]) for p in pages] == [
        (1, 2, 2, [1]), (2, 2, 2, [2]),
    ]  # fmt: skip


def test_without_total_pages_a_short_page_is_the_last(client, woo):
    route = woo.get("/customers").mock(side_effect=[Woo.page([{"id": 1}, {"id": 2}]), Woo.page([{"id": 3}])])
    assert [c["id"] for c in client.customers(per_page=2)] == [1, 2, 3]
    assert route.call_count == 2


def test_a_server_ignoring_page_is_caught_instead_of_looping(client, woo):
    woo.get("/products").mock(return_value=Woo.page([{"id": 1}, {"id": 2}]))
    with pytest.raises(WooCommerceResponseError, match="ignores `page`"):
        list(client.products(per_page=2))


@pytest.mark.parametrize("per_page", [0, 101])
def test_per_page_outside_1_to_100_is_refused_before_sending(client, woo, per_page):
    with pytest.raises(ValueError, match="per_page"):
        list(client.orders(per_page=per_page))
    assert client.calls == 0


def test_orders_filter_on_gmt_dates_and_page_by_id(client, woo):
    route = woo.get("/orders").mock(return_value=Woo.page([], total=0, pages=0))
    since = datetime(2026, 3, 14, 15, 2, 11, tzinfo=timezone(timedelta(hours=2)))
    list(client.orders(status=["processing", "on-hold"], modified_after=since))
    assert dict(route.calls.last.request.url.params) == {
        "orderby": "id", "order": "asc", "modified_after": "2026-03-14T13:02:11", "dates_are_gmt": "true",
        "status": "processing,on-hold", "per_page": "100", "page": "1",
    }  # fmt: skip


# --- retries --------------------------------------------------------------------------------------


def test_retries_503_with_exponential_jittered_backoff_then_succeeds(client, woo, slept):
    route = woo.get("/orders/7").mock(side_effect=[httpx.Response(503), httpx.Response(503),
                                                   httpx.Response(200, json={"id": 7})])  # fmt: skip
    assert client.get_order(7) == {"id": 7}
    assert route.call_count == 3
    assert slept == [0.5, 1.0]  # base·2^n, jitter at its maximum (1.0 → 100 %)
    assert client.calls == 3


def test_jitter_shortens_the_delay_to_at_least_half(http, woo):
    slept: list[float] = []
    client = WooCommerceClient(http, base_url=BASE, consumer_key=KEY, consumer_secret=SECRET, sleep=slept.append,
                               jitter=lambda: 0.0)  # fmt: skip
    woo.get("/orders/7").mock(side_effect=[httpx.Response(502), httpx.Response(200, json={"id": 7})])
    client.get_order(7)
    assert slept == [0.25]


def test_429_waits_the_retry_after_seconds(client, woo, slept):
    woo.get("/products/5").mock(side_effect=[Woo.error(429, "rest_too_many_requests", "Slow down", **{
        "Retry-After": "7"}), httpx.Response(200, json={"id": 5})])  # fmt: skip
    assert client.get_product(5)["id"] == 5
    assert slept == [7.0]


def test_429_retry_after_as_http_date(client, woo, slept):
    when = format_datetime(datetime.fromtimestamp(NOW + 12, UTC), usegmt=True)
    woo.get("/products/5").mock(side_effect=[httpx.Response(429, headers={"Retry-After": when}),
                                             httpx.Response(200, json={"id": 5})])  # fmt: skip
    client.get_product(5)
    assert slept == [12.0]


def test_a_retry_after_longer_than_max_wait_is_raised_for_the_job_to_reschedule(client, woo, slept):
    woo.get("/products/5").mock(return_value=httpx.Response(429, headers={"Retry-After": "120"}))
    with pytest.raises(RateLimited) as caught:
        client.get_product(5)
    assert isinstance(caught.value, TransientError)
    assert caught.value.retry_after == 120.0 and caught.value.status == 429
    assert slept == [] and client.calls == 1


def test_5xx_after_the_last_attempt_is_transient(client, woo, slept):
    woo.get("/orders/7").mock(return_value=httpx.Response(500))
    with pytest.raises(WooCommerceUnavailable, match="500 after 4 attempt") as caught:
        client.get_order(7)
    assert isinstance(caught.value, TransientError) and caught.value.status == 500
    assert len(slept) == 3


def test_timeouts_on_reads_are_retried(client, woo):
    woo.get("/orders/7").mock(side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"id": 7})])
    assert client.get_order(7)["id"] == 7


def test_a_post_that_may_have_run_is_not_retried_in_place(client, woo, slept):
    route = woo.post("/products").mock(return_value=httpx.Response(503))
    with pytest.raises(WooCommerceUnavailable):
        client.create_product({"name": "Tasse", "sku": "KOP-1"})
    assert route.call_count == 1 and slept == []
    woo.post("/customers").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(WooCommerceUnavailable, match="ReadTimeout after 1 attempt"):
        client.create_customer({"email": "a@example.com"})


def test_a_post_that_never_left_is_retried(client, woo):
    route = woo.post("/products").mock(side_effect=[httpx.ConnectError("refused"), httpx.Response(201, json={"id": 9})])
    assert client.create_product({"name": "Tasse"})["id"] == 9
    assert route.call_count == 2


# --- errors ---------------------------------------------------------------------------------------


def test_400_is_permanent_and_carries_woocommerce_code_and_message(client, woo, slept):
    woo.put("/orders/7").mock(return_value=Woo.error(400, "rest_invalid_param", "Invalid parameter(s): status"))
    with pytest.raises(WooCommerceRequestError) as caught:
        client.update_order_status(7, "wc-shipped")
    error = caught.value
    assert isinstance(error, PermanentError) and not isinstance(error, TransientError)
    assert (error.status, error.code, error.message) == (400, "rest_invalid_param", "Invalid parameter(s): status")
    assert str(error) == "PUT orders/{id}: WooCommerce answered 400 rest_invalid_param: Invalid parameter(s): status"
    assert slept == []


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [(401, "woocommerce_rest_cannot_view", WooCommerceAuthError), (403, "woocommerce_rest_authentication_error",
     WooCommerceAuthError), (404, "woocommerce_rest_shop_order_invalid_id", WooCommerceNotFound)],
)  # fmt: skip
def test_auth_and_not_found_have_their_own_permanent_classes(client, woo, status, code, error_class):
    woo.get("/orders/7").mock(return_value=Woo.error(status, code, "Nope."))
    with pytest.raises(error_class) as caught:
        client.get_order(7)
    assert caught.value.code == code and isinstance(caught.value, PermanentError)


def test_html_in_error_messages_is_stripped(client, woo):
    message = 'An account is already registered. <a href="https://shop.example/my-account">Please log in.</a>'
    woo.post("/customers").mock(return_value=Woo.error(400, "registration-error-email-exists", message))
    with pytest.raises(WooCommerceRequestError) as caught:
        client.create_customer({"email": "a@example.com"})
    assert caught.value.message == "An account is already registered. Please log in."


def test_redirect_is_reported_not_followed(client, woo):
    woo.get("/orders/7").mock(return_value=httpx.Response(301, headers={"Location": "https://www.shop.example/x?y=1"}))
    with pytest.raises(WooCommerceRequestError, match=r"redirected \(301\) to https://www.shop.example/x;"):
        client.get_order(7)


def test_a_plugins_stray_bom_is_tolerated_but_html_is_not(client, woo):
    woo.get("/orders/7").mock(return_value=httpx.Response(200, content=b'\xef\xbb\xbf{"id": 7}'))
    assert client.get_order(7) == {"id": 7}
    woo.get("/orders/8").mock(return_value=httpx.Response(200, content=b"<html>Just a moment...</html>"))
    with pytest.raises(WooCommerceResponseError):
        client.get_order(8)


def test_secrets_never_reach_errors_or_logs(client, woo, caplog):
    caplog.set_level(logging.DEBUG)
    woo.get("/orders/1").mock(return_value=Woo.error(401, "woocommerce_rest_authentication_error", "Consumer secret "
                                                     "is invalid."))  # fmt: skip
    woo.get("/orders/2").mock(return_value=httpx.Response(503))
    woo.get("/orders/3").mock(side_effect=httpx.ConnectError(f"cannot connect to {BASE}"))
    errors = []
    for order_id in (1, 2, 3):
        with pytest.raises(Exception) as caught:
            client.get_order(order_id)
        errors.append(caught.value)
    assert woo.calls.last.request.headers["authorization"] == f"Basic {BASIC}"  # sent, as HTTP Basic
    text = caplog.text + repr(client) + " ".join(f"{e!s} {e!r} {e.args}" for e in errors)
    assert "retrying" in caplog.text
    for secret in (SECRET, KEY, BASIC):
        assert secret not in text
    assert (
        errors[2].__cause__ is None and errors[2].__suppress_context__
    )  # the httpx error (and its request) is dropped


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example",
        "ftp://shop.example",
        "shop.example",
        "https://ck:cs@shop.example",
        "https://shop.example/?a=1",
    ],
)
def test_refuses_base_urls_that_would_leak_credentials(url):
    with pytest.raises(WooCommerceConfigError):
        WooCommerceClient(base_url=url, consumer_key=KEY, consumer_secret=SECRET)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8081", "http://localhost:8081/", "http://[::1]:8081"])
def test_plain_http_is_allowed_to_loopback_for_the_sandbox(url):
    with WooCommerceClient(base_url=url, consumer_key=KEY, consumer_secret=SECRET) as client:
        assert client.api_root.endswith("/wp-json/wc/v3")


def test_an_injected_http_client_is_left_open(http):
    WooCommerceClient(http, base_url=BASE, consumer_key=KEY, consumer_secret=SECRET).close()
    assert not http.is_closed
    own = WooCommerceClient(base_url=BASE, consumer_key=KEY, consumer_secret=SECRET)
    own.close()
    assert own.http.is_closed


# --- upserts, stock, customers, webhooks --------------------------------------------------------------


def test_upsert_product_by_sku_creates_then_updates(client, woo):
    store: dict[str, dict[str, Any]] = {}

    def find(request: httpx.Request) -> httpx.Response:
        found = [p for p in store.values() if p["sku"].casefold() == request.url.params["sku"].casefold()]
        return Woo.page(found, total=len(found), pages=1 if found else 0)

    def create(request: httpx.Request) -> httpx.Response:
        store["KOP-1"] = Woo.product(41, **json.loads(request.content))
        return httpx.Response(201, json=store["KOP-1"])

    woo.get("/products").mock(side_effect=find)
    woo.post("/products").mock(side_effect=create)
    update = woo.put("/products/41").mock(return_value=httpx.Response(200, json=Woo.product(41, "KOP-1", name="B")))
    first = client.upsert_product({"sku": "KOP-1", "name": "A", "regular_price": "12.95"})
    assert first.created and first.record["id"] == 41
    second = client.upsert_product({"sku": "kop-1", "name": "B"})  # SKUs match case-insensitively, as in MySQL
    assert not second.created and second.record["name"] == "B"
    assert update.call_count == 1 and client.calls_by_endpoint == {"GET products": 2, "POST products": 1,
                                                                   "PUT products/{id}": 1}  # fmt: skip


def test_upsert_that_loses_a_create_race_updates_the_winner(client, woo):
    woo.get("/products").mock(side_effect=[Woo.page([], total=0, pages=0), Woo.page([Woo.product(41, "KOP-1")])])
    woo.post("/products").mock(return_value=Woo.error(400, "product_invalid_sku", "Invalid or duplicated SKU."))
    woo.put("/products/41").mock(return_value=httpx.Response(200, json=Woo.product(41, "KOP-1")))
    assert client.upsert_product({"sku": "KOP-1", "name": "A"}).created is False


def test_upsert_product_refuses_a_sku_held_by_a_variation(client, woo):
    variation = Woo.product(43, "KOP-TS-M", type="variation", parent_id=40)
    woo.get("/products").mock(return_value=Woo.page([variation], total=1, pages=1))
    with pytest.raises(SkuConflict, match="variation 43 of product 40"):
        client.upsert_product({"sku": "KOP-TS-M"})


def test_upsert_variation_creates_under_its_parent_then_updates(client, woo):
    variation = Woo.product(43, "KOP-TS-M", type="variation", parent_id=40)
    woo.get("/products").mock(side_effect=[Woo.page([]), Woo.page([variation]), Woo.page([variation])])
    create = woo.post("/products/40/variations").mock(return_value=httpx.Response(201, json=variation))
    update = woo.put("/products/40/variations/43").mock(return_value=httpx.Response(200, json=variation))
    assert client.upsert_variation(40, {"sku": "KOP-TS-M", "regular_price": "19.95"}).created
    assert not client.upsert_variation(40, {"sku": "KOP-TS-M", "regular_price": "18.95"}).created
    assert create.call_count == update.call_count == 1
    with pytest.raises(SkuConflict):
        client.upsert_variation(41, {"sku": "KOP-TS-M"})


def test_set_stock_by_sku_writes_a_variation_under_its_parent(client, woo):
    variation = Woo.product(43, "KOP-TS-M", type="variation", parent_id=40, manage_stock=True, stock_quantity=3)
    woo.get("/products").mock(return_value=Woo.page([variation], total=1, pages=1))
    put = woo.put("/products/40/variations/43").mock(return_value=httpx.Response(200, json=variation))
    client.set_stock_by_sku("KOP-TS-M", 3)
    assert json.loads(put.calls.last.request.content) == {"manage_stock": True, "stock_quantity": 3}
    assert client.stock_by_sku("KOP-TS-M") == Stock(40, 43, "KOP-TS-M", True, 3, "instock")


def test_set_stock_by_unknown_sku_returns_none(client, woo):
    woo.get("/products").mock(return_value=Woo.page([], total=0, pages=0))
    assert client.set_stock_by_sku("NOPE", 1) is None


def test_find_products_by_skus_asks_in_chunks_and_maps_back(client, woo):
    def find(request: httpx.Request) -> httpx.Response:
        asked = request.url.params["sku"].split(",")
        return Woo.page([Woo.product(i, sku.upper()) for i, sku in enumerate(asked) if sku != "b"])

    route = woo.get("/products").mock(side_effect=find)
    found = client.find_products_by_skus(["a", "b", "c", "a"], chunk=2)
    assert sorted(found) == ["a", "c"] and found["c"]["sku"] == "C"
    assert [c.request.url.params["sku"] for c in route.calls] == ["a,b", "c"]


def test_find_customer_by_email_asks_every_role(client, woo):
    route = woo.get("/customers").mock(return_value=Woo.page([{"id": 5, "email": "Jorg@Example.com"}]))
    assert client.find_customer_by_email(" jorg@example.com ")["id"] == 5
    assert route.calls.last.request.url.params["role"] == "all"


def test_upsert_customer_updates_the_existing_user(client, woo):
    woo.get("/customers").mock(return_value=Woo.page([{"id": 5, "email": "jorg@example.com"}]))
    put = woo.put("/customers/5").mock(return_value=httpx.Response(200, json={"id": 5}))
    assert client.upsert_customer({"email": "jorg@example.com", "first_name": "J\u00f6rg"}).created is False
    assert put.call_count == 1


def test_webhook_calls(client, woo):
    create = woo.post("/webhooks").mock(return_value=httpx.Response(201, json={"id": 3, "status": "active"}))
    enable = woo.put("/webhooks/3").mock(return_value=httpx.Response(200, json={"id": 3, "status": "active"}))
    delete = woo.delete("/webhooks/3").mock(return_value=httpx.Response(200, json={"id": 3}))
    client.create_webhook(topic="order.created", delivery_url="https://koppel.example/webhooks/shop", secret="s3cr&t")
    client.enable_webhook(3)
    client.delete_webhook(3)
    assert json.loads(create.calls.last.request.content) == {
        "name": "Koppel order.created", "topic": "order.created", "delivery_url": "https://koppel.example/webhooks/shop",
        "secret": "s3cr&t", "status": "active",
    }  # fmt: skip
    assert json.loads(enable.calls.last.request.content) == {"status": "active"}
    assert delete.calls.last.request.url.params["force"] == "true"
    with pytest.raises(ValueError):
        client.create_webhook(topic="order.created", delivery_url="https://koppel.example/", secret="")


def test_batch_is_limited_to_100_items(client, woo):
    with pytest.raises(ValueError, match="100"):
        client.batch("products", update=[{"id": i} for i in range(101)])
    route = woo.post("/products/batch").mock(return_value=httpx.Response(200, json={"update": []}))
    client.batch("products", update=[{"id": 1, "stock_quantity": 3}])
    assert json.loads(route.calls.last.request.content) == {"update": [{"id": 1, "stock_quantity": 3}]}
