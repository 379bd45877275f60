"""SquarespaceClient against respx-faked Squarespace answers: auth headers, cursor paging, filters, errors,
rate limits, inventory adjustments and webhook subscriptions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from connectors.http import Retry
from connectors.squarespace.client import API_ROOT, SquarespaceClient, iso, parse_time
from connectors.squarespace.errors import (
    SquarespaceAuthError,
    SquarespaceNotFound,
    SquarespaceRateLimited,
    SquarespaceRequestError,
    SquarespaceResponseError,
)
from gateway.errors import AuthFailed, NotFound, RateLimited, Rejected

TOKEN = "sq-token-0123456789"
ORDERS = f"{API_ROOT}/1.0/commerce/orders"


def error(kind: str, message: str) -> dict[str, object]:
    return {"type": kind, "subtype": None, "message": message, "details": None, "contextId": "ABC"}


def page(items: list[dict[str, object]], cursor: str | None, key: str = "result") -> dict[str, object]:
    return {key: items, "pagination": {"hasNextPage": cursor is not None, "nextPageCursor": cursor,
                                       "nextPageUrl": None}}  # fmt: skip


@pytest.fixture
def site():
    waits: list[float] = []
    with httpx.Client() as http:
        client = SquarespaceClient(http, token=TOKEN, retry=Retry(attempts=3, base=0), sleep=waits.append)
        client.waits = waits  # type: ignore[attr-defined]
        yield client


@respx.mock
def test_every_call_carries_the_bearer_token_and_koppels_own_user_agent(site):
    route = respx.get(f"{ORDERS}/abc123").respond(200, json={"id": "abc123", "lineItems": []})
    assert site.get_order("abc123")["id"] == "abc123"
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["user-agent"].startswith("Koppel/")


@respx.mock
def test_orders_page_by_cursor_and_the_filters_go_with_the_first_request_only(site):
    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if "cursor" in params:
            assert list(params) == ["cursor"]  # Squarespace refuses a cursor with other parameters
            return httpx.Response(200, json=page([{"id": "o3"}], None))
        assert params["modifiedAfter"] == "2026-03-14T11:00:00.000Z"
        assert params["modifiedBefore"] == "2026-03-14T12:00:00.000Z"
        return httpx.Response(200, json=page([{"id": "o1"}, {"id": "o2"}], "next-1"))

    respx.get(ORDERS).mock(side_effect=answer)
    after = datetime(2026, 3, 14, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    pages = list(site.orders(modified_after=after, modified_before=after + timedelta(hours=1)))
    assert [[o["id"] for o in items] for items, _ in pages] == [["o1", "o2"], ["o3"]]
    assert [cursor for _, cursor in pages] == ["next-1", None]


@respx.mock
def test_modified_after_alone_is_sent_with_a_modified_before_as_squarespace_wants_both(site):
    route = respx.get(ORDERS).respond(200, json=page([], None))
    list(site.orders(modified_after=datetime(2026, 1, 1, tzinfo=UTC)))
    params = route.calls.last.request.url.params
    assert params["modifiedAfter"] == "2026-01-01T00:00:00.000Z" and params["modifiedBefore"]


@respx.mock
def test_a_null_list_is_an_empty_page(site):
    respx.get(f"{API_ROOT}/1.0/commerce/inventory").respond(200, json={"inventory": None, "pagination": None})
    assert list(site.inventory()) == []


@respx.mock
def test_a_429_is_waited_out_with_its_retry_after(site):
    route = respx.get(f"{ORDERS}/o1")
    route.side_effect = [httpx.Response(429, headers={"Retry-After": "7"}, json=error("RATE_LIMIT_ERROR", "slow")),
                         httpx.Response(200, json={"id": "o1"})]  # fmt: skip
    assert site.get_order("o1") == {"id": "o1"}
    assert site.waits == [7.0] and site.calls == 2


@respx.mock
def test_a_429_storm_longer_than_the_client_waits_is_rate_limited(site):
    respx.get(f"{ORDERS}/o1").respond(429, headers={"Retry-After": "60"}, json=error("RATE_LIMIT_ERROR", "slow"))
    with pytest.raises(SquarespaceRateLimited) as raised:
        site.get_order("o1")
    assert isinstance(raised.value, RateLimited) and raised.value.retry_after == 60


@respx.mock
def test_refused_credentials_are_an_auth_error_naming_squarespaces_type_but_never_the_token(site):
    respx.get(f"{ORDERS}/o1").respond(401, json=error("AUTHORIZATION_ERROR", "bad token"))
    with pytest.raises(SquarespaceAuthError) as raised:
        site.get_order("o1")
    assert isinstance(raised.value, AuthFailed)
    text = str(raised.value)
    assert "AUTHORIZATION_ERROR" in text and "bad token" in text and TOKEN not in text


@respx.mock
def test_an_unknown_order_is_not_found_and_a_bad_request_is_rejected_with_its_type(site):
    respx.get(f"{ORDERS}/nope").respond(404, json=error("NOT_FOUND", "order not found"))
    respx.get(ORDERS).respond(400, json=error("INVALID_REQUEST_ERROR", "cursor is not valid"))
    with pytest.raises(SquarespaceNotFound) as missing:
        site.get_order("nope")
    assert isinstance(missing.value, NotFound)
    with pytest.raises(SquarespaceRequestError) as refused:
        list(site.orders(cursor="bad"))
    assert isinstance(refused.value, Rejected) and refused.value.code == "INVALID_REQUEST_ERROR"


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "a?b", "a b"])
def test_an_id_that_could_leave_its_path_segment_is_refused_before_sending(site, bad):
    with pytest.raises(ValueError, match="not a Squarespace id"):
        site.get_order(bad)


@respx.mock
def test_fulfilment_posts_shipments_and_whether_to_notify(site):
    route = respx.post(f"{ORDERS}/o1/fulfillments").respond(204)
    site.fulfil_order("o1", notify=True)
    assert json.loads(route.calls.last.request.content) == {"shouldSendNotification": True, "shipments": []}
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


@respx.mock
def test_inventory_adjustments_carry_their_idempotency_key(site):
    route = respx.post(f"{API_ROOT}/1.0/commerce/inventory/adjustments").respond(204)
    site.adjust_inventory("koppel-1", set_finite={"v1": 4})
    sent = route.calls.last.request
    assert sent.headers["idempotency-key"] == "koppel-1"
    body = json.loads(sent.content)
    assert body["setFiniteOperations"] == [{"variantId": "v1", "quantity": 4}]
    assert body["incrementOperations"] == body["decrementOperations"] == body["setUnlimitedOperations"] == []
    with pytest.raises(ValueError, match="Idempotency-Key"):
        site.adjust_inventory("k" * 65, set_finite={"v1": 1})


@respx.mock
def test_by_id_reads_ask_fifty_ids_at_a_time(site):
    route = respx.get(url__regex=rf"{API_ROOT}/1\.0/commerce/inventory/.+").mock(
        side_effect=lambda request: httpx.Response(200, json={"inventory": [
            {"variantId": i} for i in request.url.path.rsplit("/", 1)[1].split(",")]}))  # fmt: skip
    found = site.get_inventory([f"v{n}" for n in range(120)])
    assert len(found) == 120 and route.call_count == 3


@respx.mock
def test_webhook_subscriptions_are_created_listed_tested_rotated_and_deleted(site):
    hooks = f"{API_ROOT}/1.0/webhook_subscriptions"
    url = "https://k.example/webhooks/sq"
    created = {"id": "s1", "endpointUrl": url, "topics": ["order.create"], "secret": "AB" * 32}
    respx.post(hooks).respond(201, json=created)
    respx.get(hooks).respond(200, json={"webhookSubscriptions": [{k: v for k, v in created.items() if k != "secret"}]})
    respx.post(f"{hooks}/s1/actions/sendTestNotification").respond(200, json={"statusCode": 202})
    respx.post(f"{hooks}/s1/actions/rotateSecret").respond(200, json={"secret": "CD" * 32})
    deleted = respx.delete(f"{hooks}/s1").respond(204)
    assert site.create_subscription(created["endpointUrl"], ["order.create"])["secret"] == "AB" * 32
    assert [s["id"] for s in site.subscriptions()] == ["s1"]
    assert site.test_notification("s1", "order.create") == 202
    assert site.rotate_secret("s1") == "CD" * 32
    site.delete_subscription("s1")
    assert deleted.called


@respx.mock
def test_a_created_subscription_without_its_secret_is_a_bad_response(site):
    respx.post(f"{API_ROOT}/1.0/webhook_subscriptions").respond(201, json={"id": "s1"})
    with pytest.raises(SquarespaceResponseError, match="secret"):
        site.create_subscription("https://k.example/webhooks/sq", ["order.create"])


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_iso_and_parse_time_round_trip_to_the_millisecond(moment):
    parsed = parse_time(iso(moment))
    assert parsed is not None and abs(parsed - moment) < timedelta(milliseconds=1)


@given(st.text(max_size=40))
def test_parse_time_never_raises(text):
    result = parse_time(text)
    assert result is None or result.tzinfo is not None
