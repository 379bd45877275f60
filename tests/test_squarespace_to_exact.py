"""Orders Squarespace → Exact Online with the default mappings, end to end over real HTTP: the Squarespace
sandbox's signed thin notifications into Koppel's receiver, real Redis, the worker reading each order through
the Commerce API and the generic orders flow booking it in the Exact sandbox — in each of the four document
types (sales order, sales invoice, direct invoice, sales entry).

Squarespace's prices include VAT and it gives the tax only in total: the order reaches Exact at net prices,
with the VAT code of each line's rate (table `vat_codes`) and the promotion as a discount line of its own,
and Exact's amounts add up to what the customer paid. Also: the status filter, an order seen again
(skipped), the customer found by e-mail or created, the default debtor, a SKU Exact lacks, and the payment
condition from its table by the payment's provider (read from the Transactions API)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis

from connectors.exactonline.auth import OAuthApp
from connectors.exactonline.sandbox import ExactSandbox, connect_sandbox
from connectors.exactonline.sandbox import create_sandbox as exact_sandbox
from connectors.squarespace.sandbox import create_sandbox as squarespace_sandbox
from gateway.app import create_app
from gateway.config import Config, parse_config
from gateway.errors import PermanentError
from gateway.ingest import JOB_FUNC, make_queue
from gateway.redisserver import free_port
from gateway.stack import LiveServer, serve
from workers import runtime
from workers.inbox import pump_for
from workers.jobs import process_event
from workers.subscriptions import managed_endpoints, sync_endpoint

pytestmark = pytest.mark.integration

DIVISION = 1234567
REDIRECT = "https://koppel.example/oauth/exact/callback"
ENV = {"EXACT_CLIENT_SECRET": "sandbox-secret", "SQ_TOKEN": "sq_oauth_token", "SQ_HOOK": "00" * 32}
INTEGRATION = "sq-to-exact"
SKUS = ["SQ-MOK-1", "SQ-THEE-2"]
DOCUMENTS: dict[str, tuple[str, str, str]] = {
    "sales_order": ("salesorder/SalesOrders", "OrderID", "salesorder/SalesOrderLines"),
    "sales_invoice": ("salesinvoice/SalesInvoices", "InvoiceID", "salesinvoice/SalesInvoiceLines"),
    "direct_invoice": ("salesinvoice/SalesInvoices", "InvoiceID", "salesinvoice/SalesInvoiceLines"),
    "sales_entry": ("salesentry/SalesEntries", "EntryID", "salesentry/SalesEntryLines"),
}
TABLES = {
    "vat_codes": {"entries": {"21": "2", "9": "1", "0": "0"}},
    "revenue_accounts": {"default": "8000"},
    "payment_conditions": {"entries": {"stripe": "00", "paypal": "14"}, "default": "30"},  # by payment provider
}
CENT = Decimal("0.01")


def make_config(sq_url: str, exact_url: str, gateway_url: str, settings: dict[str, Any]) -> Config:
    return parse_config(
        {
            "gateway": {"public_url": gateway_url, "queue": "koppel-sq-exact"},
            "endpoints": [{"id": "sq-hooks", "kind": "squarespace", "secret": "env:SQ_HOOK", "system": "sq"}],
            "systems": [
                {"id": "sq", "kind": "squarespace", "base_url": sq_url, "credentials": {"api_key": "env:SQ_TOKEN"},
                 "settings": {"reconcile_interval_seconds": 0}},
                {"id": "exact", "kind": "exactonline", "base_url": exact_url,
                 "credentials": {"client_secret": "env:EXACT_CLIENT_SECRET"},
                 "settings": {"client_id": "koppel-sandbox"}},
            ],
            "integrations": [{"id": INTEGRATION, "source": "sq-hooks", "target": "exact", "flows": ["orders"],
                              "settings": settings, "tables": TABLES}],
        },
        environ=ENV,
    )  # fmt: skip


@dataclass
class Env:
    sq: LiveServer
    exact: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime

    @property
    def document(self) -> str:
        return str(self.rt.config.integrations[0].settings.get("document_type", "sales_order"))

    def checkout(self, seed: int, skus: list[str], **fields: Any) -> dict[str, Any]:
        """A checkout in the sandbox; the order as Squarespace's API gives it."""
        body = {"count": 1, "seed": seed, "skus": skus} | fields
        placed = self.http.post(f"{self.sq.url}/sandbox/orders", json=body).raise_for_status().json()
        order_id = placed["orders"][0]
        return self.http.get(f"{self.sq.url}/1.0/commerce/orders/{order_id}",
                             headers={"Authorization": f"Bearer {ENV['SQ_TOKEN']}",
                                      "User-Agent": "koppel-test"}).raise_for_status().json()  # fmt: skip

    def update(self, order_id: str, update: str) -> None:
        self.http.post(f"{self.sq.url}/sandbox/orders/{order_id}/update", json={"update": update}).raise_for_status()

    def deliveries(self, count: int) -> None:
        answer = self.http.get(f"{self.sq.url}/sandbox/deliveries", params={"min": count, "timeout": 15})
        assert len(answer.raise_for_status().json()["deliveries"]) >= count

    def run_jobs(self) -> list[dict[str, Any]]:
        """The inbox pumped into jobs and every event job run as a worker runs it: each one's outcome here."""
        pump_for(self.conn, self.rt.config.gateway).drain(timeout=10)
        queue = make_queue(self.conn, self.rt.config.gateway.queue)
        jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
        events = [job for job in jobs if job is not None and job.func_name == JOB_FUNC]
        for job in events:
            queue.remove(job)
        return [process_event(job.args[0])["integrations"][INTEGRATION] for job in events]

    def rows(self, path: str) -> list[dict[str, Any]]:
        return self.sandbox.store.rows(DIVISION, path)

    def booked(self, number: str, document: str | None = None) -> list[dict[str, Any]]:
        document = document or self.document
        path, _, _ = DOCUMENTS[document]
        found = [r for r in self.rows(path) if r.get("YourRef") == number]
        if path == "salesinvoice/SalesInvoices":
            found = [r for r in found if (r["Type"] == 8023) == (document == "direct_invoice")]
        return found

    def lines(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        _, key, line_path = DOCUMENTS[self.document]
        return sorted((r for r in self.rows(line_path) if r.get(key) == record[key]), key=lambda r: r["LineNumber"])

    def accounts(self, email: str) -> list[dict[str, Any]]:
        return [a for a in self.rows("crm/Accounts") if str(a.get("Email") or "").lower() == email.lower()]


@pytest.fixture
def env(rconn: redis.Redis, redis_url: str, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:  # fmt: skip
    settings = getattr(request, "param", {})
    sq = serve(squarespace_sandbox(retry_delays=(0.3, 0.6, 1.2)), name="Squarespace sandbox")
    exact_app = exact_sandbox(redirect_uris=(REDIRECT,), rate_limits=False)
    exact = serve(exact_app, name="Exact Online sandbox")
    port = free_port()
    config = make_config(sq.url, exact.url, f"http://127.0.0.1:{port}", settings)
    gateway = serve(create_app(config, redis_url), port=port, name="gateway")
    try:
        with httpx.Client(timeout=20) as http:
            http.post(f"{exact.url}/sandbox/seed/items", json={"skus": SKUS}).raise_for_status()
            services = ["SHIPPING", "DISCOUNT"]
            http.post(f"{exact.url}/sandbox/seed/items", json={"skus": services, "stock": None}).raise_for_status()
            sq_skus = [*SKUS, "SQ-ONLY-1"]
            http.post(f"{sq.url}/sandbox/products/seed", json={"skus": sq_skus, "quantity": 100}).raise_for_status()
            rt = runtime.Runtime(config=config, connection=rconn)
            monkeypatch.setattr(runtime, "_runtime", rt)
            connect_sandbox(http, OAuthApp(exact.url, "koppel-sandbox", "sandbox-secret", REDIRECT), rconn, "exact")
            [managed] = managed_endpoints(config)
            sync_endpoint(config, managed, rt.context(), connection=rconn)
            try:
                yield Env(sq, exact, exact_app.state.sandbox, http, rconn, rt)
            finally:
                rt.close()
    finally:
        gateway.stop()
        exact.stop()
        sq.stop()


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


@pytest.mark.parametrize("env", [pytest.param({"document_type": d}, id=d) for d in DOCUMENTS], indirect=True)
def test_a_squarespace_order_is_booked_at_net_prices_with_vat_codes_and_its_promotion_as_a_line(env):
    order = env.checkout(1, SKUS, promo={"code": "LENTE10", "percent": 10})
    number, grand, tax = order["orderNumber"], _d(order["grandTotal"]["value"]), _d(order["taxTotal"]["value"])
    env.deliveries(1)
    [result] = env.run_jobs()
    assert (result["outcome"], result["document"]) == ("created", env.document), result
    [booked] = env.booked(number)
    assert all(env.booked(number, other) == [] for other in DOCUMENTS if other != env.document)
    [account] = env.accounts(order["customerEmail"])
    assert booked["Customer" if env.document == "sales_entry" else "OrderedBy"] == account["ID"]
    lines = env.lines(booked)
    assert len(lines) == len(order["lineItems"]) + 2  # the goods, shipping, the promotion
    *goods, shipping, discount = lines
    assert {line["VATCode"] for line in lines} == {"2"}  # 21 %, the rate the order's totals imply
    if env.document == "sales_entry":  # amounts excl. VAT and the VAT Squarespace charged, to the cent
        assert sum((_d(line["AmountFC"]) for line in lines), Decimal(0)) == grand - tax
        assert sum((_d(line["VATAmountFC"]) for line in lines), Decimal(0)) == tax
        assert _d(discount["AmountFC"]) < 0 and "LENTE10" in discount["Description"]
        return
    assert booked["PaymentCondition"] == "00"  # paid through Stripe (the Transactions API): table payment_conditions
    for line, item in zip(goods, order["lineItems"], strict=True):  # unit prices excl. VAT, not Squarespace's
        assert line["ItemCode"] == item["sku"] and line["Quantity"] == item["quantity"]
        paid = _d(item["unitPricePaid"]["value"]) * item["quantity"]
        assert abs(_d(line["AmountFC"]) - (paid * 100 / 121).quantize(CENT)) <= CENT
    assert (shipping["ItemCode"], discount["ItemCode"]) == ("SHIPPING", "DISCOUNT")
    assert _d(discount["UnitPrice"]) < 0 and "LENTE10" in discount["Description"]
    net = sum((_d(line["AmountFC"]) for line in lines), Decimal(0))
    vat = sum((_d(line["VATAmountFC"]) for line in lines), Decimal(0))  # Exact's own VAT, per line
    assert net == grand - tax  # what Squarespace says excl. VAT, to the cent
    assert abs(net + vat - grand) <= CENT * len(lines) / 2  # Exact rounds the VAT per line
    env.update(order["id"], "FULFILLED")  # seen again: booked already, never twice
    env.deliveries(2)
    [again] = env.run_jobs()
    assert again["outcome"] == "skipped" and "already in Exact Online" in again["reason"], again
    assert len(env.booked(number)) == 1


@pytest.mark.parametrize("env", [{"order_statuses": ["fulfilled"]}], indirect=True)
def test_only_the_configured_statuses_travel(env, caplog):
    order = env.checkout(2, SKUS[:1], payment={"provider": "PAYPAL"})
    env.deliveries(1)
    [pending] = env.run_jobs()
    assert (pending["outcome"], pending["reason"]) == ("skipped", "status 'pending' is not synced")
    assert env.booked(order["orderNumber"]) == []
    env.update(order["id"], "FULFILLED")
    env.deliveries(2)
    [fulfilled] = env.run_jobs()
    assert fulfilled["outcome"] == "created", fulfilled
    [booked] = env.booked(order["orderNumber"])
    assert booked["PaymentCondition"] == "14"  # paid through PayPal
    env.update(order["id"], "CANCELED")  # cancelled in Squarespace after Koppel booked it
    env.deliveries(3)
    with caplog.at_level(logging.WARNING, logger="koppel.flows.orders"):
        [cancelled] = env.run_jobs()
    assert (cancelled["outcome"], cancelled["reason"]) == ("skipped", "status 'cancelled' is not synced")
    assert "cancel that order there by hand" in caplog.text and booked["OrderID"] in caplog.text


def test_the_customer_is_found_by_e_mail_or_created_once_and_updated(env):
    eva = {"Name": "Eva Visser", "Email": "EVA@example.com", "City": "Utrecht", "Country": "NL"}
    seeded = env.http.post(f"{env.exact.url}/sandbox/seed", json={"entity": "crm/Accounts", "records": [eva]})
    known = seeded.raise_for_status().json()["ids"][0]
    first = env.checkout(3, SKUS[:1], email="eva@example.com")
    second = env.checkout(4, SKUS[1:], email="new.customer@example.com")
    third = env.checkout(5, SKUS[:1], email="new.customer@example.com")
    env.deliveries(3)
    assert [r["outcome"] for r in env.run_jobs()] == ["created"] * 3
    [booked] = env.booked(first["orderNumber"])
    assert booked["OrderedBy"] == known and len(env.accounts("eva@example.com")) == 1
    [made] = env.accounts("new.customer@example.com")  # a person: Squarespace has no company names
    names = [f"{o['billingAddress']['firstName']} {o['billingAddress']['lastName']}" for o in (second, third)]
    assert names[0] != names[1] and made["Name"] == names[1]  # created by the first order, updated by the next
    assert {env.booked(o["orderNumber"])[0]["OrderedBy"] for o in (second, third)} == {made["ID"]}


@pytest.mark.parametrize("env", [{"default_debtor": "9999"}], indirect=True)
def test_every_order_goes_to_the_default_debtor(env):
    debtor = env.http.post(f"{env.exact.url}/sandbox/seed", json={"entity": "crm/Accounts", "records": [
        {"Code": "9999", "Name": "Webshop Squarespace", "Status": "C"}]}).json()["ids"][0]  # fmt: skip
    order = env.checkout(6, SKUS[:1], email="someone@example.com")
    env.deliveries(1)
    [result] = env.run_jobs()
    assert result["outcome"] == "created", result
    assert env.booked(order["orderNumber"])[0]["OrderedBy"] == debtor
    assert env.accounts("someone@example.com") == []


def test_an_order_with_a_sku_exact_lacks_fails_naming_it_and_books_nothing(env):
    order = env.checkout(7, [SKUS[0], "SQ-ONLY-1"])
    env.deliveries(1)
    with pytest.raises(PermanentError, match=r"SKU\(s\) SQ-ONLY-1 do not exist as items in Exact Online"):
        env.run_jobs()
    assert env.booked(order["orderNumber"]) == []
