from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.config import Endpoint
from gateway.errors import MalformedRequest, SignatureRejected
from handlers.base import Incoming
from handlers.squarespace import handle

ORDER_UPDATE = (Path(__file__).parent / "fixtures" / "squarespace_order_update.json").read_bytes()
SECRET = "5A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9"

# Computed with OpenSSL 3.0, independently of the code under test:
#   openssl dgst -sha256 -mac HMAC -macopt hexkey:5A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9 \
#     -binary < tests/fixtures/squarespace_order_update.json | xxd -p -c 32
SIG_ORDER_UPDATE = "c93a4d3f3ef6ee1a5b5bab449e48da9e0c45d5d15cebbd742b752f9092ca4c69"


def endpoint(secret: str = SECRET) -> Endpoint:
    return Endpoint(id="sq", kind="squarespace", secret=SecretStr(secret))


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(bytes.fromhex(secret), body, hashlib.sha256).hexdigest()


def request(body: bytes, signature: str | None) -> Incoming:
    headers = {"content-type": "application/json", "user-agent": "Squarespace/1.0"}
    if signature is not None:
        headers["squarespace-signature"] = signature
    return Incoming(method="POST", headers=headers, query={}, body=body)


def notification(topic: str, data: dict | None = None, **fields: object) -> bytes:
    body = {
        "id": "7a9e1f30-2b4c-4d5e-8f60-718293a4b5c6",
        "websiteId": "5f2a7c1e9b3d4a0012c3e4f5",
        "subscriptionId": "8d1f0a2b-6c4e-4b7a-a1d3-9e2f5c0b7a61",
        "topic": topic,
        "createdOn": "2026-03-14T13:05:41.512Z",
        "data": data if data is not None else {"orderId": "65f2e1a9c3b8d70011aa22bb"},
        **fields,
    }
    return json.dumps(body).encode()


def test_test_signer_agrees_with_openssl():
    assert sign(ORDER_UPDATE) == SIG_ORDER_UPDATE


def test_accepts_openssl_vector_and_returns_the_order_event():
    outcome = handle(request(ORDER_UPDATE, SIG_ORDER_UPDATE), endpoint())
    assert outcome.status == 202
    (event,) = outcome.events
    assert event.topic == "order.update"
    assert event.resource == "order"
    assert event.resource_id == "65f2e1a9c3b8d70011aa22bb"
    assert event.delivery_key == "0c9b8f3e-5d2a-4f1b-9e7c-3a6d2b1f0e84"
    assert event.read_payload()["data"]["update"] == "FULFILLED"


def test_accepts_upper_case_hex_signature():
    assert handle(request(ORDER_UPDATE, SIG_ORDER_UPDATE.upper()), endpoint()).status == 202


def test_accepts_lower_case_configured_secret():
    assert handle(request(ORDER_UPDATE, SIG_ORDER_UPDATE), endpoint(SECRET.lower())).status == 202


def test_order_create_is_keyed_on_the_notification_id():
    body = notification("order.create")
    (event,) = handle(request(body, sign(body)), endpoint()).events
    assert (event.topic, event.resource, event.resource_id) == ("order.create", "order", "65f2e1a9c3b8d70011aa22bb")
    assert event.delivery_key == "7a9e1f30-2b4c-4d5e-8f60-718293a4b5c6"


def test_extension_uninstall_uses_the_website_id():
    body = notification("extension.uninstall", data={})
    (event,) = handle(request(body, sign(body)), endpoint()).events
    assert (event.topic, event.resource, event.resource_id) == (
        "extension.uninstall",
        "extension",
        "5f2a7c1e9b3d4a0012c3e4f5",
    )


def test_redelivery_of_a_notification_has_the_same_delivery_key():
    body = notification("order.update", data={"orderId": "x1", "update": "REFUNDED"})
    first = handle(request(body, sign(body)), endpoint()).events[0]
    second = handle(request(body, sign(body)), endpoint()).events[0]
    assert first.delivery_key == second.delivery_key


def test_rejects_tampered_body_with_401():
    tampered = ORDER_UPDATE.replace(b"FULFILLED", b"CANCELED")
    with pytest.raises(SignatureRejected) as caught:
        handle(request(tampered, SIG_ORDER_UPDATE), endpoint())
    assert (caught.value.status, caught.value.reason) == (401, "bad_signature")


def test_rejects_wrong_secret_with_401():
    other = "00" * 32
    with pytest.raises(SignatureRejected) as caught:
        handle(request(ORDER_UPDATE, SIG_ORDER_UPDATE), endpoint(other))
    assert caught.value.status == 401


def test_rejects_signature_keyed_with_the_hex_text_instead_of_its_bytes():
    wrong = hmac.new(SECRET.encode(), ORDER_UPDATE, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureRejected):
        handle(request(ORDER_UPDATE, wrong), endpoint())


@pytest.mark.parametrize("signature", [None, "", "  "])
def test_rejects_missing_signature_header_with_401_missing_signature(signature):
    with pytest.raises(SignatureRejected) as caught:
        handle(request(ORDER_UPDATE, signature), endpoint())
    assert (caught.value.status, caught.value.reason) == (401, "missing_signature")
    assert caught.value.message == "Squarespace-Signature header is missing"


def test_rejection_message_never_contains_secret_or_signature():
    with pytest.raises(SignatureRejected) as caught:
        handle(request(ORDER_UPDATE, "ab" * 32), endpoint())
    text = str(caught.value).lower()
    assert SECRET.lower() not in text
    assert SIG_ORDER_UPDATE not in text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body is not valid JSON"),
        (b"[]", "body is not a JSON object"),
        (json.dumps({"topic": "order.create", "data": {"orderId": "1"}}).encode(), "id is missing"),
        (json.dumps({"id": "n1", "data": {"orderId": "1"}}).encode(), "topic is missing"),
        (json.dumps({"id": "n1", "topic": "order"}).encode(), "topic is not of the form resource.event"),
        (json.dumps({"id": "n1", "topic": "order.create"}).encode(), "data is missing"),
        (json.dumps({"id": "n1", "topic": "order.create", "data": []}).encode(), "data is not a JSON object"),
        (json.dumps({"id": "n1", "topic": "order.create", "data": {}}).encode(), "data.orderId is missing"),
        (json.dumps({"id": ["n1"], "topic": "order.create"}).encode(), "id is not a non-empty string"),
    ],
)
def test_rejects_malformed_body_with_valid_signature_with_400(body, message):
    with pytest.raises(MalformedRequest) as caught:
        handle(request(body, sign(body)), endpoint())
    assert caught.value.status == 400
    assert caught.value.message == message


def test_accepts_unknown_topic_without_a_resource_id():
    body = notification("site.publish", data={})
    (event,) = handle(request(body, sign(body)), endpoint()).events
    assert (event.resource, event.resource_id) == ("site", None)
