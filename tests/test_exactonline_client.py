"""ExactClient against respx: envelopes, paging, dates, retries, error classes, call counts, no leaks."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.exactonline.auth import ExactAuth, OAuthApp, Tokens, TokenStore
from connectors.exactonline.client import ExactClient, Retry
from connectors.exactonline.endpoints import Accounts, SalesOrders
from connectors.exactonline.errors import (
    ExactAuthError,
    ExactNotFound,
    ExactPayloadError,
    ExactRequestError,
    ExactResponseError,
    ExactUnavailable,
)
from connectors.exactonline.odata import Guid, any_of, encode, eq, literal, pad_code, parse_date
from connectors.exactonline.ratelimit import RateLimiter
from connectors.exactonline.sync import SyncItems, SyncReader
from gateway.errors import PermanentError, TransientError
from tests.exactonline_support import ExactResponses, FakeClock

R = ExactResponses
BASE = "https://start.exactonline.test"
ROOT = f"{BASE}/api/v1/123/"
GUID = "5f1c7a43-1d0a-4d3c-9d51-0a2b3c4d5e6f"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api():
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        yield router


@pytest.fixture
def client(clock):
    with httpx.Client() as http:
        yield ExactClient(
            http, base_url=BASE, division=123, sleep=clock.sleep, jitter=lambda: 0.5,
            limiter=RateLimiter.unlimited(clock=clock, sleep=clock.sleep),
        )  # fmt: skip


def test_list_unwraps_results_and_follows_next(api, client):
    second = f"{ROOT}crm/Accounts?$skiptoken=guid'{GUID}'"
    route = api.get("crm/Accounts").mock(side_effect=[
        httpx.Response(200, json=R.page([{"ID": "a"}, {"ID": "b"}], next_url=second)),
        httpx.Response(200, json=R.page([{"ID": "c"}])),
    ])  # fmt: skip
    assert [r["ID"] for r in client.query(Accounts, filter=eq("Status", "C"))] == ["a", "b", "c"]
    first, following = route.calls[0].request.url, route.calls[1].request.url
    assert first.params["$filter"] == "Status eq 'C'"
    assert first.params["$select"].startswith("ID,Code,Name,Email")
    assert following.params["$skiptoken"] == f"guid'{GUID}'" and "$filter" not in following.params
    assert client.calls == 2


def test_next_link_to_another_host_is_not_followed(api, client):
    api.get("crm/Accounts").respond(200, json=R.page([{"ID": "a"}], next_url="https://evil.example/steal"))
    with pytest.raises(ExactResponseError, match="another host"):
        client.query(Accounts)


def test_single_entity_envelope_dates_and_guid_key(api, client):
    route = api.get(f"salesorder/SalesOrders(guid'{GUID}')").respond(200, json=R.single({
        "OrderID": GUID, "OrderDate": "/Date(1700000000000)/",
        "SalesOrderLines": {"results": [{"DeliveryDate": "/Date(1700006400000+0060)/"}]},
    }))  # fmt: skip
    order = client.get(SalesOrders, GUID.upper())
    amsterdam = ZoneInfo("Europe/Amsterdam")
    assert order["OrderDate"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=amsterdam)
    assert order["SalesOrderLines"]["results"][0]["DeliveryDate"] == datetime(2023, 11, 15, 0, 0, tzinfo=amsterdam)
    assert route.called
    with pytest.raises(ValueError):
        client.get(SalesOrders, "not-a-guid")


def test_a_created_entitys_own_dates_are_parsed_and_what_it_embeds_is_left_as_sent(api, client):
    api.post("salesorder/SalesOrders").respond(201, json=R.single({
        "OrderID": GUID, "OrderNumber": 7, "OrderDate": "/Date(1700000000000)/", "Remarks": "/Date(not a date)/",
        "SalesOrderLines": {"results": [{"DeliveryDate": "/Date(1700006400000+0060)/"}]},
    }))  # fmt: skip
    created = client.create_sales_order({"OrderedBy": GUID, "SalesOrderLines": [{"Item": GUID}]})
    assert created["OrderID"] == GUID and created["OrderNumber"] == 7
    assert created["OrderDate"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=ZoneInfo("Europe/Amsterdam"))
    assert created["Remarks"] == "/Date(not a date)/"
    assert created["SalesOrderLines"]["results"][0]["DeliveryDate"] == "/Date(1700006400000+0060)/"


def test_date_parsing_can_treat_milliseconds_as_utc():
    assert parse_date("/Date(0)/", UTC) == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_date("2024-01-01") is None


def test_put_and_delete_accept_an_empty_body(api, client):
    put = api.put(f"crm/Accounts(guid'{GUID}')").respond(204)
    delete = api.delete(f"crm/Accounts(guid'{GUID}')").respond(204)
    client.update_account(GUID, {"Name": "New"})
    client.delete(Accounts, GUID)
    assert put.calls.last.request.content == b'{"Name":"New"}'
    assert delete.called


def test_find_account_by_email_filters_escapes_and_takes_one(api, client):
    route = api.get("crm/Accounts").respond(200, json=R.page([{"ID": GUID, "Email": "o'brien@x.nl"}]))
    assert client.find_account_by_email(" o'brien@x.nl ")["ID"] == GUID
    params = route.calls.last.request.url.params
    assert params["$filter"] == "Email eq 'o''brien@x.nl'"
    assert params["$top"] == "1"
    api.get("crm/Accounts").respond(200, json=R.page([]))
    assert client.find_account_by_email("nobody@x.nl") is None


def test_item_ids_for_many_codes_in_one_or_filter_per_chunk(api, client):
    codes = [f"SKU-{i}" for i in range(25)] + ["sku-3", " SKU-4 "]
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["$filter"])
        return httpx.Response(200, json=R.page([
            {"ID": f"id-{i}", "Code": f"sku-{i}"} for i in range(25) if i != 7 and f"'SKU-{i}'" in seen[-1]
        ]))  # fmt: skip

    api.get("logistics/Items").mock(side_effect=answer)
    found = client.find_item_ids_by_codes(codes)
    assert len(seen) == 2  # 25 distinct codes, 20 per request
    assert seen[0].startswith("(Code eq 'SKU-0' or Code eq 'SKU-1' or ") and seen[0].count(" or ") == 19
    assert "SKU-7" not in found
    assert found["SKU-3"] == found["sku-3"] == "id-3"
    assert found["SKU-4"] == "id-4" and len(found) == 25


def test_item_sales_prices_are_read_by_id_in_one_or_filter_per_chunk(api, client):
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(25)]
    seen: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        asked = [i for i in ids if f"guid'{i}'" in seen[-1]["$filter"]]
        return httpx.Response(200, json=R.page([{"ID": i.upper(), "StandardSalesPrice": 1.5} for i in asked
                                                if not i.endswith("7")]))  # fmt: skip

    api.get("logistics/Items").mock(side_effect=answer)
    prices = client.item_sales_prices([*ids, ids[0]])
    assert len(seen) == 2 and seen[0]["$select"] == "ID,StandardSalesPrice"  # 25 distinct ids, 20 per request
    assert seen[0]["$filter"].startswith(f"(ID eq guid'{ids[0]}' or ") and seen[0]["$filter"].count(" or ") == 19
    assert prices[ids[3]] == 1.5 and ids[7] not in prices  # keys lower-cased; an item gone meanwhile has none
    assert len(prices) == 23


def test_5xx_is_retried_with_jittered_backoff_then_succeeds(api, client, clock):
    api.get("vat/VATCodes").mock(side_effect=[
        httpx.Response(503), httpx.Response(500), httpx.Response(200, json=R.page([{"Code": "2"}])),
    ])  # fmt: skip
    assert client.list_vat_codes() == [{"Code": "2"}]
    assert clock.slept == [0.5 * 0.75, 1.0 * 0.75]
    assert client.calls == 3


def test_timeouts_are_retried_for_reads(api, client):
    api.get("vat/VATCodes").mock(side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json=R.page([]))])
    assert client.list_vat_codes() == []


def test_retries_run_out_into_a_retryable_error(api, client):
    api.get("vat/VATCodes").respond(502, json=R.error("Bad gateway"))
    with pytest.raises(ExactUnavailable) as caught:
        client.list_vat_codes()
    assert isinstance(caught.value, TransientError)
    assert caught.value.status == 502 and client.calls == Retry().attempts


def test_a_post_is_not_repeated_after_a_5xx_or_read_timeout(api, client):
    route = api.post("crm/Accounts").mock(side_effect=[httpx.Response(500), httpx.ReadTimeout("lost")])
    for _ in range(2):
        with pytest.raises(ExactUnavailable):
            client.create_account({"Name": "Once"})
    assert route.call_count == 2  # one attempt each: the job retries from the lookup


def test_a_post_is_repeated_when_it_never_left(api, client):
    route = api.post("crm/Accounts").mock(side_effect=[
        httpx.ConnectError("refused"), httpx.Response(201, json=R.single({"ID": GUID})),
    ])  # fmt: skip
    assert client.create_account({"Name": "Once"})["ID"] == GUID
    assert route.call_count == 2


def test_permanent_error_carries_exacts_message(api, client):
    api.post("salesorder/SalesOrders").respond(400, json=R.error("Mandatory: Ordered by", code="E1"))
    with pytest.raises(ExactRequestError) as caught:
        client.create_sales_order({"OrderedBy": GUID, "SalesOrderLines": [{"Item": GUID}]})
    error = caught.value
    assert isinstance(error, PermanentError) and not isinstance(error, TransientError)
    assert (error.status, error.code) == (400, "E1")
    assert str(error) == "POST salesorder/SalesOrders: Exact answered 400: Mandatory: Ordered by"


def test_unknown_guid_is_not_found(api, client):
    api.get(f"crm/Accounts(guid'{GUID}')").respond(404, json=R.error("Not found"))
    with pytest.raises(ExactNotFound):
        client.get(Accounts, GUID)


def test_429_is_waited_out_until_the_reset_then_retried(api, client, clock):
    reset_ms = int(clock() * 1000) + 9_000
    api.get("vat/VATCodes").mock(side_effect=[
        httpx.Response(429, headers=R.rate_headers(0, reset_ms), json=R.error("Too many requests")),
        httpx.Response(200, json=R.page([])),
    ])  # fmt: skip
    assert client.list_vat_codes() == []
    assert clock() * 1000 >= reset_ms
    assert clock.slept and clock.slept[0] < 10


def test_required_fields_are_checked_before_sending(api, client):
    route = api.post("salesorder/SalesOrders").respond(201, json=R.single({}))
    with pytest.raises(ExactPayloadError, match=r"OrderedBy, SalesOrderLines\[2\]\.Item"):
        client.create_sales_order({"SalesOrderLines": [{"Item": GUID}, {"Quantity": 1}]})
    with pytest.raises(ExactPayloadError, match="GLAccount"):
        client.create_sales_entry({"Customer": GUID, "Journal": "70", "SalesEntryLines": [{"AmountFC": 1}]})
    assert not route.called


def test_direct_invoice_is_type_8023_and_needs_a_warehouse(api, client):
    route = api.post("salesinvoice/SalesInvoices").respond(201, json=R.single({"InvoiceID": GUID}))
    payload = {"OrderedBy": GUID, "Journal": "70", "SalesInvoiceLines": [{"Item": GUID}]}
    with pytest.raises(ExactPayloadError, match="Warehouse"):
        client.create_sales_invoice(payload, direct=True)
    client.create_sales_invoice({**payload, "Warehouse": GUID}, direct=True)
    assert b'"Type":8023' in route.calls.last.request.content
    client.create_sales_invoice(payload)
    assert b'"Type"' not in route.calls.last.request.content


def test_current_division_comes_from_me():
    with respx.mock(base_url=f"{BASE}/api/v1/") as router, httpx.Client() as http:
        route = router.get("current/Me").respond(200, json=R.page([{"CurrentDivision": 987654}]))
        client = ExactClient(http, base_url=BASE)
        assert client.division == 987654 and client.division == 987654
        assert route.call_count == 1
        assert route.calls.last.request.url.params["$select"] == "CurrentDivision"


def test_sync_reader_yields_pages_with_the_new_cursor(api, client):
    second = f"{ROOT}sync/Logistics/Items?$skiptoken=7L"
    route = api.get("sync/Logistics/Items").mock(side_effect=[
        httpx.Response(200, json=R.page([{"Timestamp": 6, "ID": "a"}, {"Timestamp": "7", "ID": "b"}], second)),
        httpx.Response(200, json=R.page([{"Timestamp": "9L", "ID": "c"}])),
    ])  # fmt: skip
    pages = list(SyncReader(client, SyncItems).read_since(5))
    assert [(len(records), cursor) for records, cursor in pages] == [(2, 7), (1, 9)]
    assert pages[0][0][1]["Timestamp"] == 7
    assert route.calls[0].request.url.params["$filter"] == "Timestamp gt 5L"
    api.get("sync/Logistics/Items").respond(200, json=R.page([]))
    assert list(SyncReader(client, SyncItems).read_since(9)) == []


def test_missing_envelope_is_a_response_error(api, client):
    api.get("vat/VATCodes").respond(200, json={"value": []})
    with pytest.raises(ExactResponseError):
        client.list_vat_codes()


def test_calls_are_counted_per_endpoint(api, client):
    api.get("vat/VATCodes").respond(200, json=R.page([]))
    api.get("crm/Accounts").respond(200, json=R.page([]))
    client.list_vat_codes()
    client.list_vat_codes()
    client.find_account_by_email("a@b.nl")
    assert client.calls == 3
    assert client.calls_by_endpoint == {"GET vat/VATCodes": 2, "GET crm/Accounts": 1}


def test_secrets_and_query_data_stay_out_of_errors_and_logs(api, rconn, clock, caplog):
    caplog.set_level(logging.DEBUG)
    app = OAuthApp(BASE, "cid", "client-secret-XYZ", "https://k.example/cb")
    store = TokenStore(rconn, "exact-main")
    store.save(Tokens("access-SECRET-1", "refresh-SECRET-1", clock() + 5, clock()))
    api.route(url=f"{BASE}/api/oauth2/token").respond(200, json=R.tokens("access-SECRET-2", "refresh-SECRET-2"))
    api.get("crm/Accounts").respond(400, json=R.error("The filter is invalid"))
    api.get("vat/VATCodes").respond(401)
    with httpx.Client() as http:
        auth = ExactAuth(store, app, http, clock=clock)
        client = ExactClient(http, base_url=BASE, division=123, auth=auth, sleep=clock.sleep)
        with pytest.raises(ExactRequestError) as bad_request:
            client.find_account_by_email("jane.customer@example.com")
        with pytest.raises(ExactAuthError) as refused:
            client.list_vat_codes()
    assert client.calls == 3  # the retry after the refresh is an Exact call too
    text = " ".join([caplog.text, str(bad_request.value), repr(bad_request.value), str(refused.value)])
    leaked = [s for s in ("access-SECRET", "refresh-SECRET", "client-secret-XYZ") if s in text]
    assert leaked == []
    assert "jane.customer" not in str(bad_request.value)
    assert "The filter is invalid" in str(bad_request.value)


def test_odata_literals_and_bodies():
    assert literal("it's") == "'it''s'"
    assert literal(Guid(GUID.upper())) == f"guid'{GUID}'"
    assert literal(True) == "true" and literal(12) == "12"
    assert any_of("Code", ["A"]) == "Code eq 'A'"
    assert pad_code("123") == " " * 15 + "123"
    body = encode({"When": datetime(2024, 7, 1, 10, 0, tzinfo=UTC), "On": date(2024, 7, 1), "Price": Decimal("9.95")})
    assert body == b'{"When":"2024-07-01T12:00:00","On":"2024-07-01","Price":9.95}'


def test_money_goes_on_the_wire_as_its_exact_digits(api, client):
    orders = api.post("salesorder/SalesOrders").respond(201, json=R.single({"OrderID": GUID}))
    put = api.put(f"crm/Accounts(guid'{GUID}')").respond(204)
    line = {"Item": GUID, "Quantity": Decimal("3"), "UnitPrice": Decimal("12.40"), "Discount": Decimal("0.1")}
    amount = Decimal("1234567890123456.78")
    client.create_sales_order({"OrderedBy": GUID, "SalesOrderLines": [line], "AmountFC": amount})
    client.update_account(GUID, {"CreditLine": Decimal("1E+3")})
    expected = (
        f'{{"OrderedBy":"{GUID}","SalesOrderLines":[{{"Item":"{GUID}","Quantity":3,"UnitPrice":12.40,'
        '"Discount":0.1}],"AmountFC":1234567890123456.78}'
    )  # through a float the amount would have gone as 1234567890123456.8
    assert orders.calls.last.request.content == expected.encode()
    assert put.calls.last.request.content == b'{"CreditLine":1000}'


@pytest.mark.parametrize("amount", [12.4, Decimal("NaN"), Decimal("-Infinity")])
def test_a_float_or_non_number_in_a_body_is_refused_before_sending(api, client, amount):
    route = api.post("crm/Accounts").respond(201, json=R.single({"ID": GUID}))
    with pytest.raises((TypeError, ValueError)):
        client.create_account({"Name": "A", "CreditLine": amount})
    assert not route.called and client.calls == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.decimals(places=4, allow_nan=False, allow_infinity=False))
def test_any_decimal_with_four_places_round_trips_through_the_body_bytes(api, client, amount):
    route = api.put(f"crm/Accounts(guid'{GUID}')").respond(204)  # one router and client for every example
    client.update_account(GUID, {"CreditLine": amount})
    assert json.loads(route.calls.last.request.content, parse_float=Decimal)["CreditLine"] == amount
