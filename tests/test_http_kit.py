"""The HTTP kit (connectors/http.py) through a tiny connector defined here, against respx."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from connectors.exactonline import errors as exact
from connectors.http import ApiClient, Retry, fold_ids, parse_retry_after
from connectors.woocommerce import errors as woo
from gateway.errors import (
    AuthFailed,
    BadResponse,
    NotFound,
    PermanentError,
    RateLimited,
    Rejected,
    TransientError,
    Unavailable,
)

API = "https://api.shop.test/v1"
NOW = 1_795_000_000.0
TOKEN = "tok-7f3a9c1e5b2d4f60"
GUID = "5f1c7a43-1d0a-4d3c-9d51-0a2b3c4d5e6f"


class ShopNotFound(NotFound):
    pass


class Shop(ApiClient):
    """A connector as small as one gets: its name, one error class of its own, where its errors say what."""

    system = "Shop"
    not_found_error = ShopNotFound

    def error_fields(self, response: httpx.Response) -> tuple[str, str]:
        try:
            body = response.json()
        except ValueError:
            return "", ""
        return str(body.get("code", "")), str(body.get("message", ""))


class Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class RecordingBudget:
    """A Budget that writes down what the kit asked of it."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def deadline(self) -> float:
        self.log.append(("deadline",))
        return NOW + 60

    def acquire(self, *, deadline: float | None = None) -> float:
        self.log.append(("acquire", deadline))
        return 0.0

    def observe(self, headers: Mapping[str, str]) -> None:
        self.log.append(("observe", headers.get("X-Remaining")))

    def throttled(self, headers: Mapping[str, str], *, deadline: float | None = None) -> None:
        self.log.append(("throttled", deadline))


def error(status: int, code: str = "", message: str = "", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message}, headers=headers)


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def make_shop(slept: list[float]) -> Iterator[Callable[..., Shop]]:
    """Shops over one httpx.Client, as a worker holds one; options override the test defaults."""
    with httpx.Client() as http:

        def make(kind: type[Shop] = Shop, **options: Any) -> Shop:
            defaults = {"auth": Bearer(TOKEN), "sleep": slept.append, "jitter": lambda: 1.0, "clock": lambda: NOW,
                        "retry": Retry(attempts=3, base=0.5, cap=10.0, max_wait=30.0)}  # fmt: skip
            return kind(http, api_root=API, **{**defaults, **options})

        yield make


@pytest.fixture
def shop(make_shop: Callable[..., Shop]) -> Shop:
    return make_shop()


@pytest.fixture
def api() -> Any:
    with respx.mock(base_url=API, assert_all_called=False) as router:
        yield router


# --- what is retried in place -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_idempotent_requests_are_retried_after_a_read_timeout(shop, api, slept, method):
    route = api.route(method=method, path="/items/7").mock(side_effect=[httpx.ReadTimeout("slow"), httpx.Response(204)])
    assert shop.send(method, "items/7").status_code == 204
    assert route.call_count == 2 and slept == [0.5]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_write_that_may_have_run_is_not_retried_after_a_read_timeout_or_5xx(shop, api, slept, method):
    route = api.route(method=method, path="/items").mock(side_effect=[httpx.ReadTimeout("slow"), httpx.Response(503)])
    with pytest.raises(Unavailable, match="ReadTimeout after 1 attempt"):
        shop.send(method, "items", json={"name": "Mug"})
    with pytest.raises(Unavailable, match="Shop answered 503 after 1 attempt") as caught:
        shop.send(method, "items", json={"name": "Mug"})
    assert caught.value.status == 503
    assert route.call_count == 2 and slept == []


@pytest.mark.parametrize(
    "never_sent", [httpx.ConnectError("refused"), httpx.ConnectTimeout("t"), httpx.PoolTimeout("p")]
)
def test_a_post_that_never_left_is_retried(shop, api, never_sent):
    route = api.post("/items").mock(side_effect=[never_sent, httpx.Response(201, json={"id": 9})])
    assert shop.request("POST", "items", json={"name": "Mug"}) == {"id": 9}
    assert route.call_count == 2


def test_a_post_answered_429_is_retried_after_the_retry_after(shop, api, slept):
    route = api.post("/items").mock(side_effect=[error(429, **{"Retry-After": "7"}), httpx.Response(201, json={})])
    shop.send("POST", "items", json={"name": "Mug"})
    assert route.call_count == 2 and slept == [7.0]


def test_5xx_backoff_is_exponential_jittered_and_runs_out_into_unavailable(make_shop, api, slept):
    shop = make_shop(jitter=lambda: 0.0, retry=Retry(attempts=4, base=1.0, cap=3.0))
    api.get("/items").mock(return_value=error(502, "bad_gateway", "Upstream down"))
    with pytest.raises(Unavailable) as caught:
        shop.send("GET", "items")
    assert slept == [0.5, 1.0, 1.5]  # base·2^n capped at 3, jitter at its minimum (50 %)
    assert isinstance(caught.value, TransientError) and caught.value.status == 502
    assert str(caught.value) == "GET items: Shop answered 502 bad_gateway: Upstream down after 4 attempt(s)"


# --- Retry-After ------------------------------------------------------------------------------------


def test_retry_after_in_seconds_is_waited_out(shop, api, slept):
    api.get("/items/5").mock(side_effect=[error(429, **{"Retry-After": "12"}), httpx.Response(200, json={})])
    shop.send("GET", "items/5")
    assert slept == [12.0]


def test_retry_after_as_an_http_date_is_waited_out(shop, api, slept):
    when = format_datetime(datetime.fromtimestamp(NOW + 20, UTC), usegmt=True)
    api.get("/items/5").mock(side_effect=[error(503, **{"Retry-After": when}), httpx.Response(200, json={})])
    shop.send("GET", "items/5")
    assert slept == [20.0]


def test_a_retry_after_over_max_wait_is_raised_as_rate_limited(shop, api, slept):
    api.get("/items/5").mock(return_value=error(429, "slow_down", "Too many requests", **{"Retry-After": "120"}))
    with pytest.raises(RateLimited) as caught:
        shop.send("GET", "items/5")
    assert caught.value.retry_after == 120.0 and caught.value.status == 429
    assert isinstance(caught.value, TransientError)
    assert slept == [] and shop.calls == 1


def test_a_5xx_asking_for_longer_than_max_wait_is_unavailable_with_its_retry_after(shop, api, slept):
    api.get("/items/5").mock(return_value=error(503, **{"Retry-After": "3600"}))
    with pytest.raises(Unavailable) as caught:
        shop.send("GET", "items/5")
    assert (caught.value.status, caught.value.retry_after) == (503, 3600.0)
    assert slept == []


@given(value=st.one_of(
    st.none(), st.text(), st.floats(allow_nan=True, allow_infinity=True).map(str), st.integers().map(str),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: format_datetime(d, usegmt=True)),
    st.from_regex(r"[A-Za-z]{3}, \d{1,2} [A-Za-z]{3} \d{1,5} \d\d:\d\d:\d\d [A-Z+\-0-9]{1,5}", fullmatch=True),
), now=st.floats(min_value=0, max_value=4e9))  # fmt: skip
def test_retry_after_parsing_never_raises_and_is_never_negative(value, now):
    seconds = parse_retry_after(value, now)
    assert seconds is None or seconds >= 0.0


# --- the budget hook ----------------------------------------------------------------------------------


def test_the_budget_is_asked_in_order_and_a_429_goes_to_it(make_shop, api, slept):
    budget = RecordingBudget()
    shop = make_shop(budget=budget)
    api.get("/items").mock(side_effect=[
        httpx.Response(429, headers={"X-Remaining": "0", "Retry-After": "5"}),
        httpx.Response(200, json=[], headers={"X-Remaining": "59"}),
    ])  # fmt: skip
    shop.send("GET", "items")
    deadline = NOW + 60
    assert budget.log == [
        ("deadline",), ("acquire", deadline), ("observe", "0"), ("throttled", deadline),
        ("acquire", deadline), ("observe", "59"),
    ]  # fmt: skip
    assert slept == []  # the budget did the waiting


def test_a_spent_budget_stops_the_request_before_it_is_sent(make_shop, api):
    class Spent(RecordingBudget):
        def acquire(self, *, deadline: float | None = None) -> float:
            raise RateLimited("budget spent", retry_after=42.0)

    route = api.get("/items").respond(200, json=[])
    with pytest.raises(RateLimited):
        make_shop(budget=Spent()).send("GET", "items")
    assert not route.called


# --- call counts --------------------------------------------------------------------------------------


def test_calls_are_counted_per_endpoint_with_ids_folded_out_and_retries_included(shop, api):
    api.get("/items/7").mock(side_effect=[httpx.Response(503), httpx.Response(200, json={})])
    for path in ("items/8", f"items/{GUID}", f"items(guid'{GUID}')/lines"):
        api.get(f"/{path}").respond(200, json={})
    api.put("/items/7").respond(200, json={})
    for path in ("items/7", "items/8", f"items/{GUID}", f"items(guid'{GUID}')/lines"):
        shop.send("GET", path)
    shop.send("PUT", "items/7", json={"stock": 3})
    assert shop.calls == 6
    assert shop.calls_by_endpoint == {"GET items/{id}": 4, "GET items/lines": 1, "PUT items/{id}": 1}


def test_counting_is_thread_safe(shop, api):
    api.get("/items").respond(200, json=[])
    threads = [threading.Thread(target=lambda: [shop.send("GET", "items") for _ in range(25)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert shop.calls == 200 and shop.calls_by_endpoint == {"GET items": 200}


def test_an_auth_flows_second_request_is_a_call_too(make_shop, api):
    class Refreshing(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
            response = yield request
            if response.status_code == 401:
                request.extensions = {**request.extensions, "shop_auth_retry": True}
                yield request

    class RefreshingShop(Shop):
        auth_retry_extension = "shop_auth_retry"

    api.get("/items").mock(side_effect=[httpx.Response(401), httpx.Response(200, json=[])])
    shop = make_shop(RefreshingShop, auth=Refreshing())
    shop.send("GET", "items")
    assert shop.calls == 2


@pytest.mark.parametrize(("label", "folded"), [
    ("orders/7/notes", "orders/{id}/notes"), ("crm/Accounts(guid'x')", "crm/Accounts"), (f"items/{GUID}", "items/{id}"),
    ("companies(123)/salesOrders(456)/lines", "companies/salesOrders/lines"), ("v2/items", "v2/items"),
])  # fmt: skip
def test_fold_ids(label, folded):
    assert fold_ids(label) == folded


# --- responses mapped onto the tree ---------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected", "not_expected"), [
    (400, Rejected, NotFound), (403, Rejected, AuthFailed), (404, ShopNotFound, AuthFailed), (409, Rejected, NotFound),
    (401, AuthFailed, Rejected), (500, Unavailable, PermanentError), (501, Unavailable, PermanentError),
])  # fmt: skip
def test_answers_map_onto_the_error_tree(shop, api, status, expected, not_expected):
    api.get("/items/7").respond(status, json={"code": "E42", "message": "Item  is\nlocked"})
    with pytest.raises(expected) as caught:
        shop.send("GET", "items/7")
    assert not isinstance(caught.value, not_expected)
    if isinstance(caught.value, Rejected | Unavailable):
        assert caught.value.status == status
    if isinstance(caught.value, Rejected):
        assert caught.value.code == "E42"
        assert str(caught.value) == f"GET items/7: Shop answered {status} E42: Item is locked"


def test_a_redirect_is_refused_naming_its_target_without_the_query(shop, api):
    api.get("/items").respond(302, headers={"Location": f"/v2/items?token={TOKEN}"})
    with pytest.raises(Rejected, match=r"redirected \(302\) to https://api.shop.test/v2/items; redirects are not f"):
        shop.send("GET", "items")


def test_304_is_an_answer_for_a_conditional_request(shop, api):
    route = api.get("/items/7").respond(304)
    assert shop.send("GET", "items/7", headers={"If-None-Match": '"v3"'}).status_code == 304
    assert route.calls.last.request.headers["If-None-Match"] == '"v3"'


def test_a_2xx_that_is_not_json_is_a_bad_response_with_its_cause(shop, api):
    api.get("/items").respond(200, content=b"<html>Just a moment...</html>")
    api.get("/empty").respond(204)
    api.get("/bom").respond(200, content=b'\xef\xbb\xbf {"id": 1}')
    with pytest.raises(BadResponse, match="GET items: the response is not JSON") as caught:
        shop.request("GET", "items")
    assert isinstance(caught.value.__cause__, ValueError)
    assert shop.request("GET", "empty") is None
    assert shop.request("GET", "bom") == {"id": 1}


@pytest.mark.parametrize(("error_class", "generic"), [
    (exact.ExactUnavailable, Unavailable), (exact.RateLimited, RateLimited), (exact.ExactRequestError, Rejected),
    (exact.ExactNotFound, NotFound), (exact.ExactAuthError, AuthFailed), (exact.ExactResponseError, BadResponse),
    (woo.WooCommerceUnavailable, Unavailable), (woo.RateLimited, RateLimited), (woo.WooCommerceRequestError, Rejected),
    (woo.WooCommerceNotFound, NotFound), (woo.WooCommerceAuthError, AuthFailed),
    (woo.WooCommerceResponseError, BadResponse),
])  # fmt: skip
def test_connector_errors_are_the_generic_ones(error_class, generic):
    assert issubclass(error_class, generic)


# --- secrets --------------------------------------------------------------------------------------------


def test_no_secret_reaches_a_message_or_a_log_line(shop, api, caplog):
    caplog.set_level(logging.DEBUG, logger="connectors")
    secret_query = {"api_key": "QUERY-SECRET-1"}
    body = {"card": "BODY-SECRET-2"}
    api.post("/a").respond(400, json={"code": "invalid", "message": "Nope"})
    api.get("/b").respond(401)
    api.get("/c").respond(500)
    api.get("/d").mock(side_effect=httpx.ConnectError(f"cannot connect with Bearer {TOKEN}"))
    api.get("/e").respond(301, headers={"Location": f"https://elsewhere.test/x?token={TOKEN}"})
    api.post("/f").respond(200, content=b"not json")
    calls = [("POST", "a", body), ("GET", "b", None), ("GET", "c", None), ("GET", "d", None), ("GET", "e", None),
             ("POST", "f", body)]  # fmt: skip
    errors: list[BaseException] = []
    for method, path, json_body in calls:
        with pytest.raises(Exception) as caught:
            shop.request(method, path, params=secret_query, json=json_body)
        errors.append(caught.value)
    assert api.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"  # it was sent
    assert all(isinstance(e, Rejected | AuthFailed | Unavailable | BadResponse) for e in errors)
    text = caplog.text + repr(shop) + " ".join(f"{e!s} {e!r} {e.args}" for e in errors)
    for secret in (TOKEN, "QUERY-SECRET-1", "BODY-SECRET-2"):
        assert secret not in text
    transport = errors[3]
    assert transport.__cause__ is None and transport.__suppress_context__  # the httpx error holds the request
