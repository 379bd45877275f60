"""An order already in Business Central that Koppel did not book: skipped, never booked twice, and reported as
an error-level skip (SPEC, Orders 3): the log line and the activity entry at ERROR, naming the order and the BC
document, the job not failed. Against the sandbox over uvicorn."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from connectors.contract import Target
from gateway.activity import ActivityLog
from gateway.envelope import Envelope, Event
from tests import test_businesscentral_sandbox as sandbox_tests
from tests.test_businesscentral_sandbox import ORDER, make_runtime
from workers import runtime
from workers.jobs import process_event

pytestmark = pytest.mark.integration

INTEGRATION = "to-bc"
bc = sandbox_tests.bc
canonical_source = sandbox_tests.canonical_source


def process(bc: Any, rconn: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    rt = make_runtime(rconn, bc.url, integrations=[{
        "id": INTEGRATION, "source": "canonical", "target": "bc", "flows": ["orders"],
        "settings": {"order_mode": "book", "document_type": "sales_order"},
    }])  # fmt: skip
    monkeypatch.setattr(runtime, "_runtime", rt)
    try:
        record = ORDER.model_dump(mode="json", exclude_computed_fields=True)
        event = Event("order.updated", "order", "1", f"k-{uuid.uuid4()}", record)
        return process_event(Envelope.wrap(event, source="contract", endpoint="canonical").model_dump(mode="json"))
    finally:
        rt.close()


def seed_items(bc: Any) -> None:
    bc.seed("items", {"number": "DESK-1"}, {"number": "CHAIR-2"}, {"number": "SHIPPING", "type": "Service"})


def test_an_order_booked_in_bc_by_hand_is_an_error_level_skip(bc, rconn, monkeypatch, canonical_source, caplog):
    seed_items(bc)
    customer = bc.target.create_customer({"displayName": "Anna BV", "email": "anna@example.com"})
    existing = bc.target.create_order("sales_order", {
        "externalDocumentNumber": "WEB-1001", "customerId": customer,
        "salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "DESK-1", "quantity": 2}]})  # fmt: skip
    [document] = bc.records("salesOrders")
    with caplog.at_level(logging.INFO):
        summary = process(bc, rconn, monkeypatch)
    result = summary["integrations"][INTEGRATION]
    assert (result["outcome"], result["target_id"], result["level"]) == ("skipped", existing, "error")
    assert bc.records("salesOrders") == [document]  # not booked twice
    [line] = [r for r in caplog.records if "WEB-1001" in r.getMessage() and "already in" in r.getMessage()]
    assert line.levelno == logging.ERROR and document["number"] in line.getMessage()
    [entry] = ActivityLog(rconn).entries(INTEGRATION)
    assert (entry.outcome, entry.level, entry.number) == ("skipped", "error", "WEB-1001")
    assert f"salesOrder {document['number']}" in entry.reason and "not booked by Koppel" in entry.reason


def test_an_order_koppel_booked_itself_is_an_ordinary_skip(bc, rconn, monkeypatch, canonical_source, caplog):
    seed_items(bc)
    first = process(bc, rconn, monkeypatch)["integrations"][INTEGRATION]
    with caplog.at_level(logging.INFO):
        again = process(bc, rconn, monkeypatch)["integrations"][INTEGRATION]
    assert first["outcome"] == "created" and again["outcome"] == "skipped" and "level" not in again
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    entries = ActivityLog(rconn).entries(INTEGRATION)
    assert [(e.outcome, e.level) for e in entries] == [("created", ""), ("skipped", "")]
    assert len(bc.records("salesOrders")) == 1


def test_the_level_is_a_target_attribute_not_a_kind_check():
    from connectors.businesscentral.connector import BusinessCentralTarget

    assert Target.existing_order_level is None
    assert BusinessCentralTarget.existing_order_level == logging.ERROR
