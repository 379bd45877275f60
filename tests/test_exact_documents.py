"""Every Exact Online document type the orders flow books — sales order, sales invoice, direct invoice,
sales entry — booked exactly once, WooCommerce → worker flow → Exact sandbox over real HTTP.

What is checked is the sandbox's own state (its in-memory administration), not the flow's report:
one document with YourRef = the order number, its lines carrying the item, warehouse or G/L
account ids Exact holds. Replays are skipped; a worker that died between Exact's answer and the
ledger is followed by a lookup, never by a second document.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from connectors.exactonline.auth import OAuthApp
from connectors.exactonline.connector import REFERENCE_TTL
from connectors.exactonline.sandbox import ExactSandbox, connect_sandbox, create_sandbox
from gateway import keys
from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError, TransientError
from tests.conftest import serve
from transforms import MappingError
from workers import runtime
from workers.jobs import run_event
from workers.ledger import EARLIER_ATTEMPT, Ledger

pytestmark = pytest.mark.integration

REDIRECT = "https://koppel.example/oauth/exact/callback"
FIXTURES = Path(__file__).parent / "fixtures" / "woocommerce"
NL_ORDER = json.loads((FIXTURES / "order_company_coupon.json").read_text())
DE_ORDER = json.loads((FIXTURES / "order_person_de.json").read_text())
SKUS = ["MEEL-SPELT-5", "BAK-PROFI-R40", "OVEN-HS", "SHIPPING", "FEE", "DISCOUNT"]
NL_LINES = ["MEEL-SPELT-5", "BAK-PROFI-R40", "OVEN-HS", "SHIPPING", "FEE", "DISCOUNT", "DISCOUNT"]
"""The coupon order's lines: the goods at full price, shipping, fee, and the coupon at 9 % and at 21 %."""
"""The item codes of NL_ORDER's document lines: its products, its shipping line and its fee (its coupon is
applied to the lines, so no discount line)."""
REVENUE = {"default": "8020", "entries": {"NL": "8000", "DE": "8010"}}
MAIN_WAREHOUSE = "5b1f1f80-6d5e-4c39-9a8e-000000000001"
INTEGRATION = "shop-to-exact"

DOCUMENTS: dict[str, tuple[str, str, str]] = {
    "sales_order": ("salesorder/SalesOrders", "OrderID", "salesorder/SalesOrderLines"),
    "sales_invoice": ("salesinvoice/SalesInvoices", "InvoiceID", "salesinvoice/SalesInvoiceLines"),
    "direct_invoice": ("salesinvoice/SalesInvoices", "InvoiceID", "salesinvoice/SalesInvoiceLines"),
    "sales_entry": ("salesentry/SalesEntries", "EntryID", "salesentry/SalesEntryLines"),
}
"""document type → (the sandbox entity, its key, its lines' entity)."""


def make_config(base_url: str, settings: dict[str, Any], system: dict[str, Any], tables: dict[str, Any]) -> Config:
    return parse_config(
        {
            "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
            "systems": [
                {
                    "id": "exact",
                    "kind": "exactonline",
                    "base_url": base_url,
                    "credentials": {"client_secret": "env:EXACT_CLIENT_SECRET"},
                    "settings": {"client_id": "koppel-sandbox", **system},
                }
            ],
            "integrations": [
                {
                    "id": INTEGRATION,
                    "source": "shop",
                    "target": "exact",
                    "flows": ["orders"],
                    "settings": settings,
                    "tables": tables,
                }
            ],
        },
        environ={"WC_SECRET": "s", "EXACT_CLIENT_SECRET": "sandbox-secret"},
    )


@dataclass
class Env:
    url: str
    sandbox: ExactSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime
    items: dict[str, str]

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        integration = self.rt.config.integrations[0]
        event = Event("order.created", "order", str(payload["id"]), f"k{payload['id']}", payload)
        return run_event(self.rt, integration, Envelope.wrap(event, source="woocommerce", endpoint="shop")).as_dict()

    @property
    def division(self) -> int:
        return self.sandbox.config.divisions[0]

    def rows(self, path: str) -> list[dict[str, Any]]:
        """The sandbox's own records of an entity (not read through the API)."""
        return self.sandbox.store.rows(self.division, path)

    def booked(self, document: str, number: str) -> list[dict[str, Any]]:
        """The documents of this type whose YourRef is the order number, in the sandbox's state."""
        path, _, _ = DOCUMENTS[document]
        found = [r for r in self.rows(path) if r.get("YourRef") == number]
        if path == "salesinvoice/SalesInvoices":  # sales invoices and direct ones share the entity
            direct = document == "direct_invoice"
            found = [r for r in found if (r["Type"] == 8023) == direct]
        return found

    def lines(self, document: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        _, key, line_path = DOCUMENTS[document]
        return sorted((r for r in self.rows(line_path) if r.get(key) == record[key]), key=lambda r: r["LineNumber"])

    def gl_account(self, code: str) -> str:
        return str(next(r["ID"] for r in self.rows("financial/GLAccounts") if r["Code"] == code))

    def seed(self, entity: str, *records: dict[str, Any]) -> list[str]:
        answer = self.http.post(f"{self.url}/sandbox/seed", json={"entity": entity, "records": list(records)})
        return list(answer.raise_for_status().json()["ids"])

    def calls(self, endpoint: str) -> int:
        return int(self.rt.target("exact").exact.calls_by_endpoint.get(endpoint, 0))

    def crash_after_write(self, number: str) -> None:
        """As if the worker died after Exact accepted the POST but before the ledger entry was written."""
        ledger = Ledger(self.conn, INTEGRATION, "orders")
        self.conn.hdel(ledger.key, number)
        ledger.mark(number)
        for seen in self.conn.scan_iter(keys.cache(INTEGRATION, "seen:orders", "*")):  # the run never finished
            self.conn.delete(seen)


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest) -> Iterator[Env]:
    """`settings` (the integration's), `system` (Exact's settings) and `tables` by indirect parametrisation."""
    given = getattr(request, "param", {})
    settings = given.get("settings", {})
    system = given.get("system", {})
    tables = given.get("tables", {"revenue_accounts": REVENUE})
    app = create_sandbox(redirect_uris=(REDIRECT,), rate_limits=False)
    live = serve(app)
    try:
        with httpx.Client(timeout=10) as http:
            rt = runtime.Runtime(config=make_config(live.url, settings, system, tables), connection=rconn)
            connect_sandbox(http, OAuthApp(live.url, "koppel-sandbox", "sandbox-secret", REDIRECT), rconn, "exact")
            items = http.post(f"{live.url}/sandbox/seed/items", json={"skus": SKUS}).raise_for_status().json()
            try:
                yield Env(live.url, app.state.sandbox, http, rconn, rt, items["items"])
            finally:
                rt.close()
    finally:
        live.stop()


def order(number: int, template: dict[str, Any] = NL_ORDER) -> dict[str, Any]:
    payload = copy.deepcopy(template)
    payload["id"] = number
    payload["number"] = str(number)
    return payload


def document_env(document: str, **extra: Any) -> dict[str, Any]:
    return {"settings": {"document_type": document}, **extra}


# -- each document type, once ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env", [pytest.param(document_env(d), id=d) for d in DOCUMENTS], indirect=True
)  # fmt: skip
def test_each_document_type_is_booked_exactly_once(env: Env) -> None:
    document = env.rt.config.integrations[0].settings["document_type"]
    first = env.run(order(8101))
    assert first["outcome"] == "created", first
    assert first["document"] == document

    again = env.run(order(8101))  # the same event, replayed
    assert again["outcome"] == "skipped" and again["target_id"] == first["target_id"] and again["calls"] == 0

    env.crash_after_write("8101")
    retried = env.run(order(8101))
    assert (retried["outcome"], retried["reason"]) == ("created", EARLIER_ATTEMPT)  # the first run never said so
    assert retried["target_id"] == first["target_id"]
    assert retried["calls"] == 1  # the lookup by YourRef, no write
    assert Ledger(env.conn, INTEGRATION, "orders").created("8101") == first["target_id"]

    [booked] = env.booked(document, "8101")
    path, key, _ = DOCUMENTS[document]
    assert booked[key] == first["target_id"]
    lines = env.lines(document, booked)
    if document == "sales_entry":
        assert [line["GLAccount"] for line in lines] == [env.gl_account("8000")] * len(NL_LINES)
        assert all("Item" not in line for line in lines)
        vat = sum(float(line["VATAmountFC"]) for line in lines)
        assert sum(line["AmountFC"] for line in lines) + vat == pytest.approx(booked["AmountFC"])  # incl. VAT
        assert vat > 0 and booked["VATAmountFC"] == pytest.approx(vat)
    else:
        assert [line["ItemCode"] for line in lines] == NL_LINES
        assert [line["Item"] for line in lines] == [env.items[code] for code in NL_LINES]
    if path == "salesinvoice/SalesInvoices":
        direct = document == "direct_invoice"
        assert booked["Type"] == (8023 if direct else 8020)
        assert booked.get("Warehouse") == (MAIN_WAREHOUSE if direct else None)
    [customer] = [a["ID"] for a in env.rows("crm/Accounts") if a.get("Email") == NL_ORDER["billing"]["email"]]
    assert booked["Customer" if document == "sales_entry" else "OrderedBy"] == customer
    # nothing else was booked anywhere
    for other, (other_path, _, _) in DOCUMENTS.items():
        if other_path != path:
            assert env.booked(other, "8101") == []


@pytest.mark.parametrize("env", [document_env("sales_entry")], indirect=True)
def test_a_sales_entry_needs_no_items(env: Env) -> None:
    payload = order(8102)
    payload["line_items"][0]["sku"] = "NOT-IN-EXACT"
    result = env.run(payload)
    assert result["outcome"] == "created", result
    assert env.calls("GET logistics/Items") == 0
    [entry] = env.booked("sales_entry", "8102")
    assert len(env.lines("sales_entry", entry)) == len(NL_LINES)

    german = env.run(order(8103, DE_ORDER))  # none of its SKUs exists in Exact; its revenue account is DE's
    assert german["outcome"] == "created", german
    [entry] = env.booked("sales_entry", "8103")
    assert {line["GLAccount"] for line in env.lines("sales_entry", entry)} == {env.gl_account("8010")}
    assert env.calls("GET logistics/Items") == 0


@pytest.mark.parametrize("env", [document_env("sales_entry")], indirect=True)
def test_gl_accounts_are_looked_up_once_per_code(env: Env) -> None:
    env.run(order(8104))
    env.run(order(8105))
    assert env.calls("GET financial/GLAccounts") == 1  # 8000, cached for the system
    assert len(env.booked("sales_entry", "8105")) == 1


# -- warehouses --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [document_env("direct_invoice", system={"warehouse": "2"})], indirect=True)
def test_a_direct_invoice_delivers_from_the_configured_warehouse(env: Env) -> None:
    [shop] = env.seed("inventory/Warehouses", {"Code": "2", "Description": "Winkel"})
    assert env.run(order(8201))["outcome"] == "created"
    [invoice] = env.booked("direct_invoice", "8201")
    assert invoice["Warehouse"] == shop != MAIN_WAREHOUSE


@pytest.mark.parametrize("env", [document_env("direct_invoice")], indirect=True)
def test_without_a_setting_the_main_warehouse_is_taken(env: Env) -> None:
    env.seed("inventory/Warehouses", {"Code": "2", "Description": "Winkel"})  # not the main one
    assert env.run(order(8202))["outcome"] == "created"
    assert env.run(order(8203))["outcome"] == "created"
    assert [i["Warehouse"] for n in ("8202", "8203") for i in env.booked("direct_invoice", n)] == [MAIN_WAREHOUSE] * 2
    assert env.calls("GET inventory/Warehouses") == 1  # the main one is cached
    assert 0 < env.conn.ttl(keys.cache("exact", "warehouses")) <= REFERENCE_TTL  # for a day, not for ever


@pytest.mark.parametrize("env", [document_env("direct_invoice", system={"warehouse": "9"})], indirect=True)
def test_a_warehouse_code_exact_lacks_fails_permanently_naming_it(env: Env) -> None:
    with pytest.raises(PermanentError, match=r"systems\.exact\.settings\.warehouse: no warehouse '9' in Exact"):
        env.run(order(8204))
    assert env.booked("direct_invoice", "8204") == []


# -- G/L accounts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env", [document_env("sales_entry", tables={"revenue_accounts": {"default": "8999"}})], indirect=True
)
def test_a_gl_code_exact_lacks_fails_permanently_naming_it(env: Env) -> None:
    with pytest.raises(PermanentError) as failed:
        env.run(order(8301))
    assert not isinstance(failed.value, MappingError)
    # the customer's account is written first: its default revenue account comes from the same table
    assert "G/L account '8999' does not exist in Exact Online" in str(failed.value)
    assert env.booked("sales_entry", "8301") == []
    env.seed("financial/GLAccounts", {"Code": "8999", "Description": "Omzet overig", "Type": 110})
    assert env.run(order(8301))["outcome"] == "created"  # once Exact has it (the miss was not cached)
    [entry] = env.booked("sales_entry", "8301")
    assert {line["GLAccount"] for line in env.lines("sales_entry", entry)} == {env.gl_account("8999")}


@pytest.mark.parametrize("env", [document_env("sales_entry")], indirect=True)
def test_exact_unavailable_during_the_gl_lookup_is_retried_not_failed(env: Env) -> None:
    assert env.run(order(8302))["outcome"] == "created"  # the customer is known and cached from here on
    env.conn.delete(keys.cache("exact", "gl_accounts"))
    client = env.rt.target("exact").exact
    client.sleep = lambda seconds: None
    env.http.post(f"{env.url}/sandbox/fail", json={"status": 503, "times": 4}).raise_for_status()
    with pytest.raises(TransientError):
        env.run(order(8303))
    assert env.booked("sales_entry", "8303") == []
    assert env.run(order(8303))["outcome"] == "created"  # the job's retry
    assert len(env.booked("sales_entry", "8303")) == 1


@pytest.mark.parametrize("env", [document_env("direct_invoice", system={"warehouse": "2"})], indirect=True)
def test_a_cached_warehouse_deleted_in_exact_is_looked_up_again_once(env: Env) -> None:
    from connectors.exactonline.connector import _endpoint

    [old] = env.seed("inventory/Warehouses", {"Code": "2", "Description": "Winkel"})
    assert env.run(order(8211))["outcome"] == "created"  # warehouse 2 is cached now
    env.rt.target("exact").exact.delete(_endpoint("inventory/Warehouses"), old)  # someone in Exact replaces it
    [new] = env.seed("inventory/Warehouses", {"Code": "2", "Description": "Winkel (nieuw)"})
    assert env.run(order(8212))["outcome"] == "created"
    [invoice] = env.booked("direct_invoice", "8212")
    assert invoice["Warehouse"] == new != old
