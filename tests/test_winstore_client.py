"""WinstoreClient against respx-faked Winstore answers: queries, auth, XML or JSON, error mapping, orders."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import respx

from connectors.http import Retry
from connectors.winstore.client import WinstoreClient, atom
from connectors.winstore.errors import (
    WinstoreAuthError,
    WinstoreNotFound,
    WinstoreRequestError,
    WinstoreResponseError,
    WinstoreUnavailable,
)
from gateway.errors import AuthFailed, BadResponse, NotFound, Rejected, TransientError

API = "https://winstore-c.aca.nl/iposws/api/osd"
USER, PASSWORD = "shop-user", "pa:ss w0rd!"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SINCE = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
XML = "application/xml; charset=utf-8"


@pytest.fixture
def api():
    with httpx.Client() as http:
        yield WinstoreClient(http, base_url=API, username=USER, password=PASSWORD,
                             retry=Retry(attempts=3, base=0), sleep=lambda _s: None)  # fmt: skip


def test_atom_is_utc_to_the_second():
    assert atom(SINCE) == "2026-12-01T08:30:15+00:00"
    assert atom(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05+00:00"  # naive: taken as UTC


@respx.mock
def test_query_parameters_are_joined_with_ampersands_and_sent_with_basic_auth(api):
    route = respx.get(f"{API}/GetChangedStockWithWarehouse").mock(return_value=httpx.Response(200, json=[]))
    assert api.stock_changed_by_warehouse(SINCE) == []
    request = route.calls.last.request
    assert request.url.query.decode().count("&") == 1 and "?" not in request.url.query.decode()
    assert dict(request.url.params) == {"date": "2026-12-01T08:30:15+00:00", "outOfStock": "1"}
    assert request.headers["authorization"] == BASIC
    assert request.headers["accept"] == "application/json"


@respx.mock
def test_answers_are_read_by_content_type(api):
    articles = b'<ArrayOfArticle xmlns:i="x"><Article><ArtKey>7</ArtKey><ArtNr>007</ArtNr></Article></ArrayOfArticle>'
    respx.get(f"{API}/GetArticleDataChangesByDate").mock(
        return_value=httpx.Response(200, headers={"Content-Type": XML}, content=articles))
    respx.get(f"{API}/GetSuppliers").mock(return_value=httpx.Response(200, json={"Suppliers": [{"SupplierId": 3}]}))
    respx.get(f"{API}/GetStock").mock(return_value=httpx.Response(200, content=b"<Stock><Stock>4</Stock></Stock>",
                                                                  headers={"Content-Type": "text/plain"}))  # fmt: skip
    assert api.articles_changed(SINCE) == [{"ArtKey": "7", "ArtNr": "007"}]
    assert api.suppliers() == [{"SupplierId": 3}]
    assert api.stock_by_gtin("8712345678906") == [{"Stock": "4"}]  # mislabelled, sniffed by its first byte


@respx.mock
def test_an_unreadable_or_hostile_body_is_a_bad_response(api):
    respx.get(f"{API}/GetSuppliers").mock(return_value=httpx.Response(200, headers={"Content-Type": XML},
        content=b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'))  # fmt: skip
    with pytest.raises(WinstoreResponseError, match=r"GET GetSuppliers: .*DOCTYPE") as caught:
        api.suppliers()
    assert isinstance(caught.value, BadResponse)


@respx.mock
def test_refused_credentials_are_an_auth_error_naming_the_fix_and_no_secret(api):
    respx.get(f"{API}/GetSuppliers").mock(
        return_value=httpx.Response(401, json={"Message": "Authorization has been denied for this request."}))
    with pytest.raises(WinstoreAuthError) as caught:
        api.suppliers()
    text = str(caught.value)
    assert isinstance(caught.value, AuthFailed) and "denied" in text and "credentials.password" in text
    assert PASSWORD not in text and USER not in text


@respx.mock
def test_client_errors_carry_winstores_message(api):
    respx.get(f"{API}/GetStock").mock(return_value=httpx.Response(404, headers={"Content-Type": XML},
        content=b"<Error><Message>Article 5 not found</Message></Error>"))  # fmt: skip
    respx.get(f"{API}/GetArticleDataBySupplierId").mock(
        return_value=httpx.Response(400, json={"Message": "The request is invalid."}))
    with pytest.raises(WinstoreNotFound, match="GET GetStock: Winstore answered 404: Article 5 not found") as nf:
        api.stock_by_key(5)
    assert isinstance(nf.value, NotFound)
    with pytest.raises(WinstoreRequestError, match="400: The request is invalid"):
        api.supplier_articles(9)


@respx.mock
def test_a_read_is_retried_through_5xx_and_a_post_is_not(api):
    route = respx.get(f"{API}/GetSuppliers").mock(side_effect=[httpx.Response(503), httpx.Response(200, json=[])])
    assert api.suppliers() == [] and route.call_count == 2
    post = respx.post(f"{API}/PostOrderWithStatusCode").mock(return_value=httpx.Response(502))
    with pytest.raises(WinstoreUnavailable) as caught:
        api.post_order({"ordernr": "W-1", "positions": [{"product_id": "1", "amount": 1}]})
    assert isinstance(caught.value, TransientError) and post.call_count == 1


ORDER = {
    "ordernr": "W-1001", "orderdate": "2026-12-01 10:00:00", "customerid": 999999, "branch": 1,
    "invoice_add": {"fname": "Ann"}, "positions": [{"product_id": "1001", "amount": 1, "single_price": "9.99"}],
}  # fmt: skip


@respx.mock
def test_an_order_is_posted_as_xml_and_its_id_read(api):
    route = respx.post(f"{API}/PostOrderWithStatusCode").mock(
        return_value=httpx.Response(200, json={"StatusCode": 200, "Message": "Order W-1001 imported", "OrderId": 42}))
    answer = api.post_order(ORDER)
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/xml" and request.headers["authorization"] == BASIC
    assert request.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?><order><ordernr>W-1001</ordernr>')
    assert (answer.order_id, answer.code) == ("42", "200")


@respx.mock
def test_an_order_answer_without_an_id_is_known_by_its_ordernr(api):
    respx.post(f"{API}/PostOrderWithStatusCode").mock(return_value=httpx.Response(200, headers={"Content-Type": XML},
        content=b"<OrderResult><StatusCode>0</StatusCode><Message>OK</Message></OrderResult>"))  # fmt: skip
    assert api.post_order(ORDER).order_id == "W-1001"


@pytest.mark.parametrize(
    "body", [{"StatusCode": 500, "Message": "Artikel onbekend"}, {"Success": False, "Message": "Artikel onbekend"}]
)
@respx.mock
def test_a_failing_status_code_under_http_200_is_a_refusal(api, body):
    respx.post(f"{API}/PostOrderWithStatusCode").mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(WinstoreRequestError, match="Artikel onbekend") as caught:
        api.post_order(ORDER)
    assert isinstance(caught.value, Rejected)
    assert "Ann" not in str(caught.value)  # the document (a customer's name) never in messages


def test_an_order_that_cannot_be_written_is_refused_before_sending(api):
    with pytest.raises(WinstoreRequestError, match=r"cannot be sent: order\.lines: a list"):
        api.post_order({"ordernr": "W-1", "lines": [{"a": 1}]})


def test_the_clock_never_leaks_microseconds():
    assert atom(datetime(2026, 12, 1, 23, 59, 59, 999999, tzinfo=UTC)).endswith(":59+00:00")


@respx.mock
def test_an_order_refused_in_xml_names_winstores_message(api):
    refusal = b"<OrderResult><StatusCode>400</StatusCode><Message>Unknown branch 7</Message></OrderResult>"
    respx.post(f"{API}/PostOrderWithStatusCode").mock(
        return_value=httpx.Response(400, headers={"Content-Type": XML}, content=refusal))
    expected = r"^POST PostOrderWithStatusCode: Winstore answered 400: Unknown branch 7$"
    with pytest.raises(WinstoreRequestError, match=expected) as caught:
        api.post_order(ORDER)
    assert (caught.value.status, caught.value.message) == (400, "Unknown branch 7")


# -- stock levels (the assumed PostStock) ---------------------------------------------------------------


@respx.mock
def test_a_stock_level_is_posted_as_a_stock_document(api):
    route = respx.post(f"{API}/PostStock").mock(
        return_value=httpx.Response(200, json={"StatusCode": 200, "Message": "Stock of article 1001 set"}))
    assert api.post_stock("1001", 2, 27) == "Stock of article 1001 set"
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/xml" and request.headers["authorization"] == BASIC
    assert request.content == (b'<?xml version="1.0" encoding="UTF-8"?><stock><artkey>1001</artkey>'
                               b"<warehouse>2</warehouse><amount>27</amount></stock>")  # fmt: skip


@respx.mock
def test_the_stock_endpoint_is_renamed_by_the_systems_endpoints_setting():
    route = respx.post(f"{API}/Stock/SetLevel").mock(return_value=httpx.Response(200, json={"StatusCode": 200}))
    with httpx.Client() as http:
        api = WinstoreClient(http, base_url=API, username=USER, password=PASSWORD,
                             endpoints={"stock": "Stock/SetLevel"})  # fmt: skip
        api.post_stock("1001", 1, 3)
        assert api.endpoint("stock") == "Stock/SetLevel" and api.endpoint("order_status") == "PostOrderStatus"
    assert route.call_count == 1


@respx.mock
def test_a_stock_level_refused_under_http_200_or_for_an_unknown_article_is_an_error(api):
    respx.post(f"{API}/PostStock").mock(side_effect=[
        httpx.Response(200, json={"StatusCode": 400, "Message": "Unknown warehouse 9"}),
        httpx.Response(404, json={"StatusCode": 404, "Message": "Article 1001 not found"}),
    ])  # fmt: skip
    with pytest.raises(WinstoreRequestError, match=r"^POST PostStock: .*status code 400: Unknown warehouse 9$"):
        api.post_stock("1001", 9, 1)
    with pytest.raises(WinstoreNotFound, match="Article 1001 not found") as caught:
        api.post_stock("1001", 1, 1)
    assert isinstance(caught.value, NotFound)


def test_a_stock_level_that_cannot_be_written_is_refused_before_sending(api):
    with pytest.raises(WinstoreRequestError, match=r"POST PostStock: the stock level cannot be sent: stock\.bad key"):
        api.post_stock("1001", 1, 2, {"bad key": 1})
