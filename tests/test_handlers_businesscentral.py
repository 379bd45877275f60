from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.config import Endpoint
from gateway.errors import MalformedRequest, SignatureRejected
from handlers.base import Incoming
from handlers.businesscentral import handle, parse_resource

NOTIFICATIONS = (Path(__file__).parent / "fixtures" / "businesscentral_notifications.json").read_bytes()
CLIENT_STATE = "bc-client-state-3f9a"
COMPANY = "companies(0a1b2c3d-0000-4000-8000-000000000001)"


def endpoint(secret: str = CLIENT_STATE) -> Endpoint:
    return Endpoint(id="bc", kind="businesscentral", secret=SecretStr(secret))


def request(body: bytes = b"", query: dict[str, str] | None = None) -> Incoming:
    return Incoming(method="POST", headers={"content-type": "application/json"}, query=query or {}, body=body)


def item(**overrides: object) -> dict:
    fields = {
        "subscriptionId": "koppel-customers",
        "clientState": CLIENT_STATE,
        "expirationDateTime": "2026-03-17T13:00:00Z",
        "resource": f"api/v2.0/{COMPANY}/customers(5c6d7e8f-0000-4000-8000-00000000000a)",
        "changeType": "updated",
        "lastModifiedDateTime": "2026-03-14T13:00:05.123Z",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def body_of(*items: dict) -> bytes:
    return json.dumps({"value": list(items)}).encode()


# --- handshake ------------------------------------------------------------------------------------


def test_handshake_echoes_the_token_as_plain_text():
    outcome = handle(request(query={"validationToken": "Zm9vYmFy-1234"}), endpoint())
    assert outcome.status == 200
    assert outcome.body == "Zm9vYmFy-1234"
    assert outcome.media_type == "text/plain; charset=utf-8"
    assert outcome.events == []


def test_handshake_needs_no_secret():
    outcome = handle(request(query={"validationToken": "t"}), endpoint("something-else"))
    assert outcome.body == "t"


def test_handshake_accepts_a_1024_character_token():
    token = "a" * 1024
    assert handle(request(query={"validationToken": token}), endpoint()).body == token


@pytest.mark.parametrize("token", ["a" * 1025, "abc\ndef", "tab\there", "nul\x00", "del\x7f", "c1\x85", ""])
def test_rejects_overlong_empty_or_control_character_token_with_400(token):
    with pytest.raises(MalformedRequest) as caught:
        handle(request(query={"validationToken": token}), endpoint())
    assert caught.value.status == 400
    assert token not in caught.value.message or token == ""


# --- notifications --------------------------------------------------------------------------------


def test_two_items_and_a_collection_become_three_events():
    outcome = handle(request(NOTIFICATIONS), endpoint())
    assert outcome.status == 202
    customers, orders, items = outcome.events

    assert (customers.topic, customers.resource, customers.resource_id) == (
        "customers.updated",
        "customers",
        "5c6d7e8f-0000-4000-8000-00000000000a",
    )
    assert customers.since is None
    assert customers.delivery_key == (
        f"koppel-customers:api/v2.0/{COMPANY}/customers(5c6d7e8f-0000-4000-8000-00000000000a)"
        ":updated:2026-03-14T13:00:05.123Z"
    )

    assert (orders.topic, orders.resource, orders.resource_id) == (
        "salesOrders.created",
        "salesOrders",
        "9f8e7d6c-0000-4000-8000-00000000000b",
    )

    assert (items.topic, items.resource, items.resource_id) == ("items.collection", "items", None)
    assert items.since == "2026-03-14T12:59:30Z"
    assert items.delivery_key.startswith("koppel-items:https://api.businesscentral.dynamics.com/")
    assert items.delivery_key.endswith(":collection:2026-03-14T13:00:30Z")


def test_payload_never_carries_the_client_state():
    for event in handle(request(NOTIFICATIONS), endpoint()).events:
        assert "clientState" not in event.payload
        assert CLIENT_STATE not in json.dumps(event.payload)
        assert event.payload["subscriptionId"]


def test_empty_value_list_is_accepted_with_no_events():
    outcome = handle(request(b'{"value": []}'), endpoint())
    assert (outcome.status, outcome.events) == (202, [])


def test_accepts_a_byte_order_mark():
    assert handle(request(b"\xef\xbb\xbf" + body_of(item())), endpoint()).status == 202


def test_redelivery_of_an_item_has_the_same_delivery_key_and_a_later_change_does_not():
    first = handle(request(body_of(item())), endpoint()).events[0]
    again = handle(request(body_of(item())), endpoint()).events[0]
    later = handle(request(body_of(item(lastModifiedDateTime="2026-03-14T13:10:00Z"))), endpoint()).events[0]
    assert first.delivery_key == again.delivery_key != later.delivery_key


@pytest.mark.parametrize(
    ("resource", "entity", "key", "since"),
    [
        (f"api/v2.0/{COMPANY}/items(abc)", "items", "abc", None),
        (f"/api/v2.0/{COMPANY}/items(abc)", "items", "abc", None),
        (f"https://api.businesscentral.dynamics.com/v2.0/t/prod/api/v2.0/{COMPANY}/items(abc)", "items", "abc", None),
        (f"api/v2.0/{COMPANY}/items('IT''EM/1')", "items", "IT'EM/1", None),
        ("api/v2.0/companies(x)/salesOrders%289f8e%29", "salesOrders", "9f8e", None),
        (
            "api/v2.0/companies(x)/customers?$filter=lastModifiedDateTime%20gt%202026-03-14T13:00:00Z",
            "customers",
            None,
            "2026-03-14T13:00:00Z",
        ),
        (
            "api/v2.0/companies(x)/customers?$filter=lastDateTimeModified gt 2026-03-14T13:00:00.123+01:00",
            "customers",
            None,
            "2026-03-14T13:00:00.123+01:00",
        ),
        (
            "api/v2.0/companies(x)/customers?%24filter=lastDateTimeModified+gt+2026-03-14T13:00:00Z",
            "customers",
            None,
            "2026-03-14T13:00:00Z",
        ),
        (
            "api%2Fv2.0%2Fcompanies(x)%2Fitems%3F%24filter%3DlastModifiedDateTime%20gt%202026-03-14T13%3A00%3A00Z",
            "items",
            None,
            "2026-03-14T13:00:00Z",
        ),
        ("api/v2.0/companies(x)/items?$top=5", "items", None, None),
    ],
)
def test_parses_resource_paths(resource, entity, key, since):
    assert parse_resource(resource) == (entity, key, since)


def test_collection_without_parseable_filter_uses_last_modified_as_since():
    body = body_of(item(resource=f"api/v2.0/{COMPANY}/customers", changeType="collection"))
    (event,) = handle(request(body), endpoint()).events
    assert (event.topic, event.resource_id, event.since) == ("customers.collection", None, "2026-03-14T13:00:05.123Z")


def test_deleted_item_becomes_a_deleted_event():
    (event,) = handle(request(body_of(item(changeType="deleted"))), endpoint()).events
    assert event.topic == "customers.deleted"


# --- rejections -----------------------------------------------------------------------------------


def test_rejects_wrong_client_state_with_401():
    with pytest.raises(SignatureRejected) as caught:
        handle(request(NOTIFICATIONS), endpoint("another-state"))
    assert (caught.value.status, caught.value.reason) == (401, "bad_signature")
    assert "another-state" not in str(caught.value)
    assert CLIENT_STATE not in str(caught.value)


def test_rejects_whole_request_when_one_item_has_the_wrong_client_state():
    body = body_of(item(), item(clientState="bc-client-state-3f9b"))
    with pytest.raises(SignatureRejected) as caught:
        handle(request(body), endpoint())
    assert caught.value.reason == "bad_signature"
    assert caught.value.message == "value[1].clientState does not match"


def test_rejects_tampered_client_state_with_401():
    tampered = NOTIFICATIONS.replace(b'"bc-client-state-3f9a"', b'"bc-client-state-3f9A"', 1)
    with pytest.raises(SignatureRejected):
        handle(request(tampered), endpoint())


def test_rejects_item_without_client_state_as_missing_signature():
    body = body_of(item(), item(clientState=None))
    with pytest.raises(SignatureRejected) as caught:
        handle(request(body), endpoint())
    assert (caught.value.status, caught.value.reason) == (401, "missing_signature")
    assert caught.value.message == "value[1].clientState is missing"


def test_rejects_non_string_client_state_as_bad_signature():
    with pytest.raises(SignatureRejected) as caught:
        handle(request(body_of(item(clientState=12))), endpoint())
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body is not valid JSON"),
        (b"[]", "body is not a JSON object"),
        (b"{}", "value is missing"),
        (b'{"value": {}}', "value is not a JSON array"),
        (b'{"value": [1]}', "value[0] is not a JSON object"),
        (body_of(item(resource=None)), "value[0].resource is missing"),
        (body_of(item(changeType=None)), "value[0].changeType is missing"),
        (body_of(item(subscriptionId=None)), "value[0].subscriptionId is missing"),
        (body_of(item(resource="")), "value[0].resource is not a non-empty string"),
        (body_of(item(resource="///")), "value[0].resource is not an API resource path"),
        (body_of(item(resource="api/v2.0/companies(x)/9items")), "value[0].resource is not an API resource path"),
        (body_of(item(lastModifiedDateTime=5)), "value[0].lastModifiedDateTime is not a string"),
    ],
)
def test_rejects_malformed_body_with_valid_client_state_with_400(body, message):
    with pytest.raises(MalformedRequest) as caught:
        handle(request(body), endpoint())
    assert caught.value.status == 400
    assert caught.value.message == message
