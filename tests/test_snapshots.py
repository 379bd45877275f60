"""Payload snapshots (gateway/snapshots.py): what the HTTP kit notes, the store's TTL, masking personal data."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
import respx
from hypothesis import example, given
from hypothesis import strategies as st

from connectors.http import ApiClient
from gateway import keys, snapshots
from gateway.payload import dumps


class Shop(ApiClient):
    system = "Shop"


@respx.mock
def test_the_http_kit_notes_each_call_into_the_open_recorder_only():
    respx.post("https://api.example/v1/orders").respond(201, json={"id": 7})
    respx.get("https://api.example/v1/orders/7").respond(200, json={"id": 7, "email": "a@b.example"})
    with httpx.Client() as http:
        client = Shop(http, api_root="https://api.example/v1")
        client.request("GET", "orders/7")  # no recorder: nothing noted, nothing fails
        with snapshots.recording("shop-to-erp", "job-1", flow="orders", received={"id": 7}) as recorder:
            client.request("POST", "orders", json={"total": 12.5}, headers={"Authorization": "Bearer s3"})
        client.request("GET", "orders/7")
    assert recorder.requests == [
        {"system": "Shop", "method": "POST", "path": "orders", "status": 201, "body": {"total": 12.50},
         "answer": {"id": 7}},
    ]  # fmt: skip
    assert "s3" not in json.dumps(recorder.as_dict())


def test_bodies_are_cut_off_and_binary_named():
    with snapshots.recording("i", "j") as recorder:
        snapshots.note_request("S", "PUT", "pictures/1", 200, b"\xff\xd8\xff" * 10, b"x" * 10_000)
    request = recorder.requests[0]
    assert request["body"] == "<30 bytes of binary data>"
    assert request["answer"].startswith("x" * 100) and request["answer"].endswith("(cut off; 10000 characters in all)")


@pytest.mark.integration
def test_the_store_keeps_a_snapshot_for_its_retention(rconn):
    with snapshots.recording("shop-to-erp", "job-2", flow="orders", received={"price": 1.5}) as recorder:
        snapshots.note_record({"id": 9})
        snapshots.note_mapped("orders", {"Amount": Decimal("1.50")}, {"account": "A-1"})
    store = snapshots.SnapshotStore(rconn, ttl=3600)
    store.save(recorder)
    key = keys.snapshot("shop-to-erp", "job-2")
    assert key == "koppel:snapshot:shop-to-erp:job-2"
    assert 3590 < rconn.ttl(key) <= 3600
    loaded = store.load("shop-to-erp", "job-2")
    assert loaded is not None
    assert loaded["record"] == {"id": 9} and loaded["received"] == {"price": 1.5}
    assert loaded["mapped"] == [{"flow": "orders", "payload": {"Amount": 1.5}, "context": {"account": "A-1"}}]
    assert store.load_many("shop-to-erp", ["job-2", "job-3", ""]) == {"job-2": loaded}
    assert snapshots.SnapshotStore(rconn).ttl == 7 * 24 * 3600


def test_a_record_that_is_the_event_as_received_is_stored_once_and_loaded_as_both(rconn):
    received = {"id": 9, "billing": {"email": "a@example.com"}, "total": Decimal("12.50")}
    with snapshots.recording("shop-to-erp", "job-4", flow="orders", received=received) as recorder:
        snapshots.note_record(received)  # the source read the event itself (WooCommerce)
    store = snapshots.SnapshotStore(rconn, ttl=3600)
    store.save(recorder)
    assert rconn.get(keys.snapshot("shop-to-erp", "job-4")).count(b"a@example.com") == 1
    loaded = store.load("shop-to-erp", "job-4")
    assert loaded is not None and "record_as_received" not in loaded
    assert loaded["record"] == loaded["received"] == {"id": 9, "billing": {"email": "a@example.com"},
                                                      "total": Decimal("12.50")}  # fmt: skip
    loaded["record"]["id"] = 10  # two objects: a reader changing one leaves the other
    assert loaded["received"]["id"] == 9
    assert store.load_many("shop-to-erp", ["job-4"])["job-4"]["record"] == {
        "id": 9, "billing": {"email": "a@example.com"}, "total": Decimal("12.50")}  # fmt: skip


def test_mask_hides_personal_data_and_keeps_ids_amounts_and_statuses():
    order = {
        "id": 5120, "status": "processing", "total": "78.78", "customer_id": 31,
        "billing": {"first_name": "Zoë", "email": "z@example.nl", "phone": "+31 20", "country": "NL"},
        "shipping_address": {"street": "Kaai 7", "city": "Antwerpen"},
        "customer_note": "call me at z@example.nl", "line_items": [{"sku": "KOP-1", "name": "Mug", "quantity": 2}],
        "Email": "Z@EXAMPLE.NL", "note": "mail z@example.nl",
    }  # fmt: skip
    masked = snapshots.mask(order)
    text = json.dumps(masked, ensure_ascii=False)
    for personal in ("Zoë", "z@example.nl", "Z@EXAMPLE.NL", "+31 20", "Kaai 7", "Antwerpen"):
        assert personal not in text
    assert masked["id"] == 5120 and masked["status"] == "processing" and masked["customer_id"] == 31
    assert masked["total"] == "78.78" and masked["line_items"][0]["sku"] == "KOP-1"
    assert masked["billing"]["email"] == snapshots.MASK
    assert masked["note"] == f"mail {snapshots.MASK}"
    assert order["billing"]["email"] == "z@example.nl"  # a copy: the original is untouched


_leaves = (
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["\x00koppel-number:1", '"\x00koppel-number:2.5', "\x00", "\\u0000"])
    | st.sampled_from(["1b65d6b8-1648-473e-8a1e-664c14", ":1e+05,", "[2.5e-07]", "1e-05"])  # exponent look-alikes
)
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5) | st.integers() | st.sampled_from(["\x00koppel-number:3"]), inner,
                      max_size=4),
    max_leaves=20,
)


@given(_values)
@example(1e16)  # a whole text that is one number with an exponent
@example([-2.5e-07])
def test_the_compact_snapshot_json_is_the_exact_encoders_text(value):
    # the per-event path (the stdlib's C encoder with marked numbers) writes what the exact encoder writes
    assert snapshots.to_json(value) == dumps(snapshots._numbers(value), default=str)
