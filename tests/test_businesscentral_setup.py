"""A customer Koppel creates in Business Central gets its tax area (US) or VAT business posting group (EU),
payment terms, payment method and shipment method from the integration's mapping tables by billing country
(a `default` row for the rest): codes looked up by `code` in BC's setup lists and sent as the ids API v2.0
takes, cached a day per system; a code BC lacks fails naming the code and the table. Also for the customer
an order creates. Against the sandbox over uvicorn."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError
from gateway.model import Address, Customer
from tests import test_businesscentral_sandbox as sandbox_tests
from tests.test_businesscentral_sandbox import ORDER, make_runtime
from workers import runtime
from workers.jobs import run_event

pytestmark = pytest.mark.integration

bc = sandbox_tests.bc
canonical_source = sandbox_tests.canonical_source

TABLES = {
    "tax_areas": {"default": "EXPORT", "entries": {"NL": "domestic", "DE": "EU"}},
    "payment_terms": {"default": "14 DAYS", "entries": {"NL": "30 DAYS"}},
    "customer_payment_methods": {"entries": {"NL": "BANK"}},
    "shipment_methods": {"default": "EXW"},
}


def seed_setup(bc: Any) -> dict[str, str]:
    ids = {}
    for entity, codes in (("taxAreas", ["DOMESTIC", "EU", "EXPORT"]), ("paymentTerms", ["30 DAYS", "14 DAYS"]),
                          ("paymentMethods", ["BANK"]), ("shipmentMethods", ["EXW"])):  # fmt: skip
        bc.seed(entity, *({"code": code, "displayName": code.title()} for code in codes))
        ids |= {f"{entity}:{r['code']}": r["id"] for r in bc.records(entity)}
    return ids


def run(bc: Any, rconn: Any, monkeypatch: pytest.MonkeyPatch, flow: str, record: Any,
        tables: dict[str, Any] = TABLES) -> Any:  # fmt: skip
    rt = make_runtime(rconn, bc.url, integrations=[{
        "id": f"to-bc-{flow}", "source": "canonical", "target": "bc", "flows": [flow],
        "settings": {"order_mode": "book", "document_type": "sales_order"}, "tables": tables,
    }])  # fmt: skip
    monkeypatch.setattr(runtime, "_runtime", rt)
    try:
        kind = flow[:-1]
        event = Event(f"{kind}.updated", kind, "1", f"k-{uuid.uuid4()}",
                      record.model_dump(mode="json", exclude_computed_fields=True))  # fmt: skip
        return run_event(rt, rt.config.integrations[0], Envelope.wrap(event, source="contract", endpoint="canonical"))
    finally:
        rt.close()


def customer(email: str, country: str | None) -> Customer:
    return Customer(source="contract", id=email, email=email, company_name="Shop BV",
                    billing_address=Address(street="Kade 1", city="Delft", country=country))  # fmt: skip


def test_a_dutch_customer_gets_the_tables_codes_as_bcs_ids(bc, rconn, monkeypatch, canonical_source):
    ids = seed_setup(bc)
    run(bc, rconn, monkeypatch, "customers", customer("nl@example.com", "NL"))
    [made] = bc.records("customers")
    assert made["taxAreaId"] == ids["taxAreas:DOMESTIC"] and made["taxAreaDisplayName"] == "Domestic"
    assert made["paymentTermsId"] == ids["paymentTerms:30 DAYS"]
    assert made["paymentMethodId"] == ids["paymentMethods:BANK"]
    assert made["shipmentMethodId"] == ids["shipmentMethods:EXW"]  # the default row


def test_other_countries_take_the_default_row_or_nothing(bc, rconn, monkeypatch, canonical_source):
    ids = seed_setup(bc)
    run(bc, rconn, monkeypatch, "customers", customer("us@example.com", "US"))
    [made] = bc.records("customers")
    assert made["taxAreaId"] == ids["taxAreas:EXPORT"] and made["paymentTermsId"] == ids["paymentTerms:14 DAYS"]
    assert made["paymentMethodId"] == "00000000-0000-0000-0000-000000000000"  # no default: the template's


def test_codes_are_looked_up_once_a_day_per_system(bc, rconn, monkeypatch, canonical_source):
    seed_setup(bc)
    run(bc, rconn, monkeypatch, "customers", customer("a@example.com", "NL"))
    lookups = bc.sandbox.counters["GET taxAreas"]
    run(bc, rconn, monkeypatch, "customers", customer("b@example.com", "NL"))
    assert bc.sandbox.counters["GET taxAreas"] == lookups == 1
    assert len(bc.records("customers")) == 2


def test_an_unknown_code_fails_naming_the_code_and_the_table(bc, rconn, monkeypatch, canonical_source):
    seed_setup(bc)
    tables = TABLES | {"payment_terms": {"entries": {"NL": "60 days"}}}
    with pytest.raises(PermanentError, match=r"no paymentTerms code '60 DAYS' \(from mapping table 'payment_terms'\)"):
        run(bc, rconn, monkeypatch, "customers", customer("nl@example.com", "NL"), tables)
    assert bc.records("customers") == []


def test_without_tables_nothing_is_sent_and_bc_keeps_its_template(bc, rconn, monkeypatch, canonical_source):
    run(bc, rconn, monkeypatch, "customers", customer("nl@example.com", "NL"), {})
    [made] = bc.records("customers")
    assert made["taxAreaId"] == made["paymentTermsId"] == "00000000-0000-0000-0000-000000000000"


def test_an_orders_new_customer_gets_them_too(bc, rconn, monkeypatch, canonical_source):
    ids = seed_setup(bc)
    bc.seed("items", {"number": "DESK-1"}, {"number": "CHAIR-2"}, {"number": "SHIPPING", "type": "Service"})
    german = ORDER.customer.model_copy(update={"billing_address": Address(street="Weg 2", city="Köln", country="DE")})
    result = run(bc, rconn, monkeypatch, "orders", ORDER.model_copy(update={"customer": german}))
    assert result.outcome == "created"
    [made] = bc.records("customers")
    assert made["taxAreaId"] == ids["taxAreas:EU"] and made["paymentTermsId"] == ids["paymentTerms:14 DAYS"]


def test_a_changed_table_entry_is_written_on_the_customers_next_update(bc, rconn, monkeypatch, canonical_source):
    ids = seed_setup(bc)
    run(bc, rconn, monkeypatch, "customers", customer("nl@example.com", "NL"))
    tables = TABLES | {"payment_terms": {"entries": {"NL": "14 days"}}}
    moved = customer("nl@example.com", "NL").model_copy(update={"phone": "+31 15 123"})
    run(bc, rconn, monkeypatch, "customers", moved, tables)
    [made] = bc.records("customers")
    assert made["paymentTermsId"] == ids["paymentTerms:14 DAYS"] and made["phoneNumber"] == "+31 15 123"
    assert made["taxAreaId"] == ids["taxAreas:DOMESTIC"]


def test_the_sandbox_refuses_a_reference_to_no_setup_record(bc):
    with pytest.raises(Exception, match=r"The Payment Terms does not exist"):
        bc.target.create_customer({"displayName": "X", "paymentTermsId": str(uuid.uuid4())})
