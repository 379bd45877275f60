"""The Asperion connector against its sandbox over uvicorn: the code flow and refresh, the tenant header, paging,
problem details, articles (inactive ones, read-only stock) and relations polled by modification date, and the
target's writes and lookups."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis

from connectors.asperion.auth import OAuthApp, TokenStore
from connectors.asperion.connector import AsperionSource, AsperionTarget
from connectors.asperion.errors import AsperionAuthError, AsperionRequestError
from connectors.asperion.sandbox import connect_sandbox, create_sandbox
from connectors.asperion.sandbox.harness import CLIENT_ID, CLIENT_SECRET, REDIRECT, TENANT, system_entry
from connectors.contract import Context
from gateway.config import System
from gateway.errors import NotFound
from gateway.model import Customer, Order, Product, StockLevel
from gateway.stack import LiveServer, serve

pytestmark = pytest.mark.integration


@dataclass
class Asperion:
    live: LiveServer
    http: httpx.Client
    conn: redis.Redis

    @property
    def url(self) -> str:
        return self.live.url

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(f"{self.url}/sandbox/{path}", json=body or {})
        response.raise_for_status()
        return response.json()

    def system(self, **settings: Any) -> System:
        entry, environ = system_entry(self.url, True)
        entry["settings"] |= settings
        return System.model_validate(entry, context={"environ": environ})

    def context(self) -> Context:
        built: dict[str, Any] = {}

        def cached(key: str, build: Any) -> Any:
            if key not in built:
                built[key] = build()
            return built[key]

        return Context(http=self.http, redis=self.conn, cached=cached)

    def connect(self) -> None:
        connect_sandbox(self.http, OAuthApp(self.url, CLIENT_ID, CLIENT_SECRET, REDIRECT), self.conn, "asperion")

    def source(self, **settings: Any) -> AsperionSource:
        return AsperionSource(self.system(**settings), self.context())

    def target(self, **settings: Any) -> AsperionTarget:
        return AsperionTarget(self.system(**settings), self.context())

    def token(self) -> str:
        tokens = TokenStore(self.conn, "asperion").load()
        assert tokens is not None
        return tokens.access_token

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}", "X-TenantId": TENANT, **kwargs.pop("headers", {})}
        return self.http.request(method, f"{self.url}/v1/{path}", headers=headers, **kwargs)


@pytest.fixture
def asp(rconn: redis.Redis) -> Iterator[Asperion]:
    live = serve(create_sandbox(), name="asperion sandbox")
    try:
        with httpx.Client(timeout=10) as http:
            found = Asperion(live, http, rconn)
            found.connect()
            yield found
    finally:
        live.stop()


def poll(source: AsperionSource, stream: str, cursor: str | None) -> tuple[list[Any], str]:
    pages = list(source.changes(stream, cursor))
    return [change for changes, _ in pages for change in changes], pages[-1][1]


# -- the sandbox's own rules ------------------------------------------------------------------------------------


def test_a_call_without_the_tenant_header_is_a_clear_400(asp):
    answer = asp.api("GET", "articles", headers={"X-TenantId": ""})
    assert answer.status_code == 400 and answer.headers["content-type"].startswith("application/problem+json")
    assert "X-TenantId" in answer.json()["detail"]
    assert asp.api("GET", "articles", headers={"X-TenantId": "777"}).status_code == 403
    assert asp.api("GET", "articles", headers={"X-Tenant-Id": TENANT, "X-TenantId": ""}).status_code == 200


def test_a_call_without_a_live_token_is_401_with_a_bearer_challenge(asp):
    answer = asp.http.get(f"{asp.url}/v1/articles", headers={"X-TenantId": TENANT})
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")


def test_paging_is_bounded_and_validated(asp):
    asp.control("seed/articles", {"skus": [f"P-{n}" for n in range(5)]})
    page = asp.api("GET", "articles", params={"page": 2, "pageSize": 2}).json()
    assert [r["code"] for r in page["data"]] == ["P-2", "P-3"] and page["totalCount"] == 5
    refused = asp.api("GET", "articles", params={"pageSize": 500})
    assert refused.status_code == 400 and "pageSize" in refused.json()["errors"]


def test_inactive_articles_are_hidden_unless_active_state_asks(asp):
    asp.control("seed/articles", {"articles": [{"code": "ON", "description": "on"},
                                               {"code": "OFF", "description": "off", "isActive": False}]})  # fmt: skip
    codes = {state: [r["code"] for r in asp.api("GET", "articles", params={"ActiveState": state}).json()["data"]]
             for state in ("Active", "Inactive", "All")}  # fmt: skip
    assert codes == {"Active": ["ON"], "Inactive": ["OFF"], "All": ["ON", "OFF"]}
    assert asp.api("GET", "articles").json()["data"][0]["code"] == "ON"


def test_validation_errors_are_problem_details(asp):
    answer = asp.api("POST", "articles", json={"salesPrice": 3})
    body = answer.json()
    assert answer.status_code == 400 and set(body["errors"]) == {"code", "description"}


def test_unknown_routes_are_problem_details(asp):
    assert asp.api("GET", "nothing").json()["status"] == 404
    assert asp.http.get(f"{asp.url}/elsewhere").status_code == 404


# -- OAuth -----------------------------------------------------------------------------------------------------


def test_the_consent_stores_tokens_and_an_expired_token_is_refreshed_with_a_rotating_refresh_token(asp):
    target = asp.target()
    asp.control("seed/articles", {"skus": ["T-1"]})
    assert list(target.find_items(["T-1"])) == ["T-1"]
    before = TokenStore(asp.conn, "asperion").load()
    asp.control("expire-tokens")
    assert list(target.find_items(["T-1"])) == ["T-1"]  # 401, refreshed, sent again
    after = TokenStore(asp.conn, "asperion").load()
    assert before is not None and after is not None and after.refresh_token != before.refresh_token
    state = asp.http.get(f"{asp.url}/sandbox/state").json()
    assert state["oauth"]["refreshes"] == 1


def test_a_system_never_connected_is_auth_failed_naming_connect(asp, rconn):
    rconn.delete(TokenStore(rconn, "asperion").key)
    with pytest.raises(AsperionAuthError, match="koppel connect asperion"):
        asp.target().find_items(["X"])


# -- the source ------------------------------------------------------------------------------------------------


def test_articles_are_polled_by_modification_date_inactive_included_with_overlap(asp):
    asp.control("seed/articles", {"articles": [{"code": "A-1", "description": "one", "currentStock": 4},
                                               {"code": "A-2", "description": "two", "isActive": False}]})  # fmt: skip
    source = asp.source()
    first, cursor = poll(source, "articles", None)
    assert sorted(c.record["code"] for c in first) == ["A-1", "A-2"]
    again, same = poll(source, "articles", cursor)  # the overlap reads them again, with the same keys
    assert {c.delivery_key for c in again} <= {c.delivery_key for c in first} and same >= cursor
    products = [source.normalise("products", c.record) for c in first]
    assert all(isinstance(p, Product) for p in products)
    assert {p.sku: p.published for p in products} == {"A-1": True, "A-2": False}
    # a user edits A-1 in Asperion an hour later: one change, a new key
    asp.control("clock", {"advance": 3600})
    ident = next(c.resource_id for c in first if c.record["code"] == "A-1")
    asp.control("update", {"resource": "articles", "id": ident, "fields": {"description": "one, renamed"}})
    later, _ = poll(source, "articles", cursor)  # the overlap again (same key), and the edit (a new key)
    seen = {c.delivery_key for c in first}
    assert [c.record["description"] for c in later if c.delivery_key not in seen] == ["one, renamed"]


def test_stock_is_read_from_current_stock_and_a_mutation_is_a_new_change(asp):
    asp.control("seed/articles", {"articles": [{"code": "S-1", "description": "s", "currentStock": 4}]})
    source = asp.source()
    first, cursor = poll(source, "stock", None)
    level = source.normalise("stock", first[0].record)
    assert isinstance(level, StockLevel) and (level.sku, level.on_hand) == ("S-1", 4)
    asp.control("clock", {"advance": 600})
    asp.control("stock", {"code": "S-1", "quantity": 3})
    later, _ = poll(source, "stock", cursor)
    assert [c.record["currentStock"] for c in later] == [3] and later[0].delivery_key != first[0].delivery_key


def test_relations_are_customers_company_or_person_and_suppliers_are_left_out(asp):
    asp.control("seed", {"resource": "relations", "records": [
        {"relationType": "Company", "companyName": "Korenaar BV", "firstName": "Els", "lastName": "Vries",
         "email": "els@korenaar.nl", "address": {"street": "Molenstraat", "houseNumber": "12", "city": "Utrecht",
                                                 "countryCode": "NL"}},
        {"relationType": "Person", "firstName": "Jan", "lastName": "Jansen", "email": "jan@example.nl"},
        {"relationType": "Company", "companyName": "Leverancier BV", "isCustomer": False},
    ]})  # fmt: skip
    source = asp.source()
    changes, _ = poll(source, "relations", None)
    customers = [source.normalise("customers", c.record) for c in changes]
    assert all(isinstance(c, Customer) for c in customers)
    assert {c.email: c.kind for c in customers} == {"els@korenaar.nl": "company", "jan@example.nl": "person"}
    company = next(c for c in customers if c.kind == "company")
    assert company.company_name == "Korenaar BV" and company.billing_address.street == "Molenstraat 12"


def test_a_sales_order_is_expanded_with_its_relation_and_normalised(asp):
    asp.control("seed/articles", {"articles": [{"code": "O-1", "description": "one", "salesPrice": 10}]})
    relation = asp.control("seed", {"resource": "relations", "records": [
        {"relationType": "Person", "firstName": "Jan", "lastName": "Jansen", "email": "jan@example.nl"}]})["ids"][0]
    asp.control("seed", {"resource": "salesorders", "records": [
        {"relationId": relation, "reference": "R-1", "lines": [{"articleCode": "O-1", "quantity": 3}]}]})
    source = asp.source()
    changes, _ = poll(source, "salesorders", None)
    order = source.normalise("orders", source.expand("orders", changes[0].record))
    assert isinstance(order, Order) and order.customer.email == "jan@example.nl"
    assert [(line.sku, line.quantity, line.total_excl) for line in order.lines] == [("O-1", 3, 30)]
    assert (order.total_excl, order.tax_total, order.total_incl) == (30, Decimal("6.3"), Decimal("36.3"))


# -- the target ------------------------------------------------------------------------------------------------


def test_an_article_is_created_found_by_code_inactive_or_not_and_updated_without_stock(asp):
    target = asp.target()
    created = target.create_product({"code": "W-1", "description": "new", "salesPrice": "5.00", "currentStock": 99})
    assert target.find_items(["w-1"]) == {"w-1": created}
    target.update_product(created, {"isActive": False, "description": "retired"})
    assert target.find_items(["W-1"]) == {"W-1": created}  # inactive, still found: never created twice
    held = asp.api("GET", f"articles/{created}").json()
    assert (held["description"], held["isActive"], held["currentStock"]) == ("retired", False, 0)
    with pytest.raises(NotFound):
        target.update_product("424242", {"description": "x"})


def test_many_codes_are_found_from_the_catalogue_in_few_calls(asp):
    skus = [f"M-{n:03d}" for n in range(150)]
    asp.control("seed/articles", {"skus": skus})
    target = asp.target()
    before = target.calls
    found = target.find_items([*skus[:120], "NONE"])
    assert sorted(found) == skus[:120] and target.calls - before == 2  # two pages of 100


def test_a_customer_is_created_found_by_email_and_synced_field_by_field(asp):
    target = asp.target()
    payload = {"relationType": "Person", "firstName": "Ann", "lastName": "Smit", "email": "ann@example.com",
               "address": {"street": "Laan", "houseNumber": "1", "city": "Delft"}}  # fmt: skip
    created = target.create_customer(payload)
    assert target.find_customer("ANN@example.com") == created
    # someone changes the city in Asperion; Koppel then sends only the phone that changed in the shop
    asp.control("update", {"resource": "relations", "id": created, "fields": {"address": {"street": "Laan",
                "houseNumber": "1", "city": "Rotterdam"}}})  # fmt: skip
    assert target.sync_customer(created, {**payload, "phone": "0612345678"}, {"phone"}) is True
    held = asp.api("GET", f"relations/{created}").json()
    assert held["phone"] == "0612345678" and held["address"]["city"] == "Rotterdam"
    assert target.sync_customer(created, {"phone": "0612345678"}, None) is False  # nothing differs


def test_documents_are_booked_and_found_by_reference(asp):
    asp.control("seed/articles", {"articles": [{"code": "D-1", "description": "d", "salesPrice": 10}]})
    target = asp.target(journal="VK")
    relation = target.create_customer({"relationType": "Person", "lastName": "Jansen", "email": "j@example.nl"})
    item = target.find_items(["D-1"])["D-1"]
    order = target.create_order("sales_order", {"reference": "WEB-1", "relationId": relation,
                                                "lines": [{"articleId": item, "quantity": 2}]})  # fmt: skip
    assert target.find_order("sales_order", "WEB-1") == order
    assert target.find_order("sales_invoice", "WEB-1") is None
    assert target.references("financial_mutation") == {"journal": "VK"}
    mutation = target.create_order("financial_mutation", {"journalCode": "VK", "reference": "WEB-2",
                                                          "lines": [{"ledgerAccount": "8000", "amount": "10.00"}]})
    assert target.find_order("financial_mutation", "WEB-2") == mutation
    with pytest.raises(AsperionRequestError) as refused:
        target.create_order("sales_order", {"reference": "WEB-3", "relationId": relation,
                                            "lines": [{"articleId": 999999, "quantity": 1}]})  # fmt: skip
    assert refused.value.status == 400 and "does not exist" in refused.value.message
