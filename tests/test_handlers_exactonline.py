from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.config import Endpoint
from gateway.envelope import body_digest
from gateway.errors import MalformedRequest, SignatureRejected
from handlers.base import Incoming
from handlers.exactonline import handle, top_level_members

SALES_ORDER_UPDATE = (Path(__file__).parent / "fixtures" / "exactonline_salesorders_update.json").read_bytes()
SECRET = "exact-webhook-secret"
# The Content object as it appears in the fixture: spaces after the colons, Key before Topic.
CONTENT = (
    '{ "Key": "5f2c3a9e-0d4b-4c1e-9a7f-1b2c3d4e5f60", "Topic": "SalesOrders", "Division": 1234567, '
    '"ClientId": "8a3f1c2e-7b6d-4e5f-9a0b-1c2d3e4f5a6b", "Action": "Update", '
    '"ExactOnlineEndpoint": "https://start.exactonline.nl/api/v1/1234567/salesorder/'
    "SalesOrders(guid'5f2c3a9e-0d4b-4c1e-9a7f-1b2c3d4e5f60')\", "
    '"EventCreatedOn": "2026-03-14T13:05:12.497" }'
)
# Computed with OpenSSL 3.0, independently of the code under test:
#   printf '%s' "$CONTENT" | openssl dgst -sha256 -hmac "exact-webhook-secret" -binary | xxd -p -c 32 | tr a-f A-F
HASH_SALES_ORDER_UPDATE = "4798D21BF11F3A4BB33AB30B9AC4BBBD2313B7DB3310BFDA932147CB4257A1F9"


def endpoint(secret: str = SECRET) -> Endpoint:
    return Endpoint(id="exact-hooks", kind="exactonline", secret=SecretStr(secret))


def request(body: bytes) -> Incoming:
    return Incoming(method="POST", headers={"content-type": "application/json"}, query={}, body=body)


def hash_code(content: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), content.encode(), hashlib.sha256).hexdigest().upper()


def notification(content: str, code: str | None = None) -> bytes:
    return ('{"Content":' + content + ',"HashCode":"' + (code or hash_code(content)) + '"}').encode()


def content_text(**overrides: object) -> str:
    fields = {
        "Topic": "Items",
        "ClientId": "8a3f1c2e-7b6d-4e5f-9a0b-1c2d3e4f5a6b",
        "Division": 1234567,
        "Action": "Update",
        "Key": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        "ExactOnlineEndpoint": "https://start.exactonline.nl/api/v1/1234567/logistics/Items(guid'0a1b')",
        "EventCreatedOn": "2026-03-14T13:05:12.497",
    }
    fields.update(overrides)
    return json.dumps({k: v for k, v in fields.items() if v is not None}, separators=(",", ":"))


def test_fixture_holds_the_content_that_was_signed():
    assert notification(CONTENT, HASH_SALES_ORDER_UPDATE) == SALES_ORDER_UPDATE
    assert hash_code(CONTENT) == HASH_SALES_ORDER_UPDATE


def test_accepts_openssl_vector_and_returns_the_event():
    outcome = handle(request(SALES_ORDER_UPDATE), endpoint())
    assert outcome.status == 200
    (event,) = outcome.events
    assert event.topic == "SalesOrders.Update"
    assert event.resource == "SalesOrders"
    assert event.resource_id == "5f2c3a9e-0d4b-4c1e-9a7f-1b2c3d4e5f60"
    assert event.delivery_key == (
        "1234567:SalesOrders:5f2c3a9e-0d4b-4c1e-9a7f-1b2c3d4e5f60:Update:2026-03-14T13:05:12.497"
    )
    assert event.payload == json.loads(CONTENT)


def test_accepts_lower_case_hash_code():
    body = notification(CONTENT, HASH_SALES_ORDER_UPDATE.lower())
    assert handle(request(body), endpoint()).status == 200


def test_accepts_whitespace_around_members():
    body = ('\r\n{ "HashCode" : "' + HASH_SALES_ORDER_UPDATE + '" ,\n\t"Content" :  ' + CONTENT + " }\n").encode()
    (event,) = handle(request(body), endpoint()).events
    assert event.resource == "SalesOrders"


def test_accepts_content_signed_with_the_whitespace_written_after_it():
    """Found by hypothesis: a sender that signs the Content's text up to the next ',' (its trailing
    whitespace included) is the sender of that text too."""
    padded = CONTENT + " \r\n"
    body = ('{"Content":' + padded + ',"HashCode":"' + hash_code(padded) + '"}').encode()
    (event,) = handle(request(body), endpoint()).events
    assert event.resource == "SalesOrders"
    with pytest.raises(SignatureRejected):  # and a wrong one still fails
        handle(request(body.replace(b"SalesOrders", b"SalesOrdrrs", 1)), endpoint())


def test_a_signed_content_that_is_no_object_is_a_400_not_a_401():
    body = ('{"Content":0\r,"HashCode":"' + hash_code("0\r") + '"}').encode()
    with pytest.raises(MalformedRequest, match="Content is not a JSON object"):
        handle(request(body), endpoint())


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n"])
def test_answers_empty_validation_request_with_200(body):
    outcome = handle(request(body), endpoint())
    assert (outcome.status, outcome.events) == (200, [])


def test_missing_event_time_falls_back_to_the_content_digest():
    content = content_text(EventCreatedOn=None, Action="Delete")
    (event,) = handle(request(notification(content)), endpoint()).events
    assert event.delivery_key == "1234567:Items:0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d:Delete:" + body_digest(
        content.encode()
    )


def test_top_level_members_keep_the_exact_text_of_each_value():
    members = top_level_members(' {"a" : [1, 2] ,"b":{ "c" : "\\u00e9" }} ')
    assert members["a"] == ([1, 2], "[1, 2]")
    assert members["b"] == ({"c": "\u00e9"}, '{ "c" : "\\u00e9" }')


def test_rejects_re_serialised_content_signature():
    reserialised = json.dumps(json.loads(CONTENT), separators=(",", ":"))
    body = notification(CONTENT, hash_code(reserialised))
    with pytest.raises(SignatureRejected):
        handle(request(body), endpoint())


def test_rejects_tampered_body_with_401():
    tampered = SALES_ORDER_UPDATE.replace(b'"Update"', b'"Delete"')
    with pytest.raises(SignatureRejected) as caught:
        handle(request(tampered), endpoint())
    assert (caught.value.status, caught.value.reason) == (401, "bad_signature")


def test_rejects_wrong_secret_with_401():
    with pytest.raises(SignatureRejected) as caught:
        handle(request(SALES_ORDER_UPDATE), endpoint("another-secret"))
    assert caught.value.status == 401
    assert SECRET not in str(caught.value)
    assert HASH_SALES_ORDER_UPDATE not in str(caught.value)


@pytest.mark.parametrize(
    "body", [('{"Content":' + CONTENT + "}").encode(), ('{"Content":' + CONTENT + ',"HashCode":null}').encode()]
)
def test_rejects_missing_hash_code_with_401_missing_signature(body):
    with pytest.raises(SignatureRejected) as caught:
        handle(request(body), endpoint())
    assert (caught.value.status, caught.value.reason) == (401, "missing_signature")


def test_rejects_non_string_hash_code_as_bad_signature():
    body = ('{"Content":' + CONTENT + ',"HashCode":42}').encode()
    with pytest.raises(SignatureRejected) as caught:
        handle(request(body), endpoint())
    assert caught.value.reason == "bad_signature"


def test_rejects_a_second_content_member_with_400():
    forged = content_text(Key="forged")
    body = (
        '{"Content":' + CONTENT + ',"HashCode":"' + HASH_SALES_ORDER_UPDATE + '","Content":' + forged + "}"
    ).encode()
    with pytest.raises(MalformedRequest):
        handle(request(body), endpoint())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "body is not a JSON object"),
        (b"nonsense", "body is not a JSON object"),
        (b"\xff{}", "body is not valid UTF-8"),
        (b'{"Content": {', "body is not valid JSON (or repeats a member)"),
        (b'{"HashCode":"AB"} trailing', "body is not valid JSON (or repeats a member)"),
        (b'{"HashCode":"AB"}', "Content is missing"),
        (notification("[1,2]"), "Content is not a JSON object"),
        (notification(content_text(Key=None)), "Content.Key is missing"),
        (notification(content_text(Topic=None)), "Content.Topic is missing"),
        (notification(content_text(Action="")), "Content.Action is not a non-empty string"),
        (notification(content_text(Division=None)), "Content.Division is missing"),
        (notification(content_text(Division=[1])), "Content.Division is not a non-empty string or integer"),
    ],
)
def test_rejects_malformed_body_with_400(body, message):
    with pytest.raises(MalformedRequest) as caught:
        handle(request(body), endpoint())
    assert caught.value.status == 400
    assert caught.value.message == message
