"""A shop order booked into Asperion as each of its document types (sales order, sales invoice, financial
mutation) through the generic orders flow and the default mappings, against the Asperion sandbox over real
HTTP: the relation found or created by e-mail, articles by code, service articles for shipping, fees and
discounts, revenue accounts per country, and a replay that books nothing twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from connectors.asperion.sandbox import create_sandbox
from connectors.asperion.sandbox.harness import connect, system_entry
from gateway.config import parse_config
from gateway.envelope import Envelope, Event
from gateway.stack import serve
from workers import runtime
from workers.jobs import run_event

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures" / "woocommerce"
NL_ORDER = json.loads((FIXTURES / "order_company_coupon.json").read_text())
SKUS = ["MEEL-SPELT-5", "BAK-PROFI-R40", "OVEN-HS", "SHIPPING", "FEE", "DISCOUNT"]
REVENUE = {"default": "8020", "entries": {"NL": "8000", "DE": "8010"}}


@pytest.fixture(params=["sales_order", "sales_invoice", "financial_mutation"])
def booked(request: pytest.FixtureRequest, rconn: redis.Redis,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any, httpx.Client, str]]:  # fmt: skip
    live = serve(create_sandbox(), name="asperion sandbox")
    try:
        with httpx.Client(timeout=10) as http:
            entry, environ = system_entry(live.url, True)
            config = parse_config({
                "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
                "systems": [entry],
                "integrations": [{"id": "shop-to-asperion", "source": "shop", "target": "asperion",
                                  "flows": ["orders"], "settings": {"document_type": request.param},
                                  "tables": {"revenue_accounts": REVENUE}}],
            }, environ={**environ, "WC_SECRET": "s"})  # fmt: skip
            connect(live.url, http, rconn, "asperion")
            articles = [{"code": s, "description": s, "isStockArticle": s not in SKUS[3:]} for s in SKUS]
            http.post(f"{live.url}/sandbox/seed/articles", json={"articles": articles}).raise_for_status()
            rt = runtime.Runtime(config=config, connection=rconn)
            monkeypatch.setattr(runtime, "_runtime", rt)
            try:
                yield request.param, rt, http, live.url
            finally:
                rt.close()
    finally:
        live.stop()


RESOURCE = {"sales_order": "salesorders", "sales_invoice": "salesinvoices", "financial_mutation": "financialmutations"}


def test_a_shop_order_is_booked_once_as_each_document_type(booked):
    document, rt, http, url = booked
    integration = rt.config.integrations[0]

    def run() -> dict[str, Any]:
        event = Event("order.created", "order", str(NL_ORDER["id"]), f"k-{uuid.uuid4()}", NL_ORDER)
        return run_event(rt, integration, Envelope.wrap(event, source="woocommerce", endpoint="shop")).as_dict()

    first = run()
    assert first["outcome"] == "created", first
    records = http.get(f"{url}/sandbox/records", params={"resource": RESOURCE[document]}).json()["records"]
    [record] = records
    assert str(record["id"]) == first["target_id"] and record["reference"] == str(NL_ORDER["number"])
    relations = http.get(f"{url}/sandbox/records", params={"resource": "relations"}).json()["records"]
    [relation] = relations
    assert record["relationId"] == relation["id"] and relation["email"] == NL_ORDER["billing"]["email"]
    assert relation["relationType"] == "Company"  # the order's billing company
    if document == "financial_mutation":
        assert {line["ledgerAccount"] for line in record["lines"]} == {"8000"}  # revenue account of NL
        booked_total = sum(Decimal(str(line["amount"])) for line in record["lines"])
    else:
        codes = [line["articleCode"] for line in record["lines"]]
        assert set(codes) == set(SKUS)  # goods, shipping, fee, and the coupon as discount lines
        booked_total = Decimal(str(record["totalExclVat"]))
    # the booked lines add up to the shop order's lines, shipping and fee excl. VAT, to the cent (the coupon
    # spread over the lines comes out of them as discount lines on DISCOUNT: the sum stays)
    parts = [line["total"] for line in NL_ORDER["line_items"]] + [NL_ORDER["shipping_total"]]
    parts += [fee["total"] for fee in NL_ORDER["fee_lines"]]
    assert booked_total == sum(Decimal(p) for p in parts)
    again = run()
    assert (again["outcome"], again["target_id"]) == ("skipped", first["target_id"])
    assert len(http.get(f"{url}/sandbox/records", params={"resource": RESOURCE[document]}).json()["records"]) == 1
