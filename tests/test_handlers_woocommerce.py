from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.config import Endpoint
from gateway.envelope import body_digest
from gateway.errors import MalformedRequest, SignatureRejected
from handlers.base import Incoming
from handlers.woocommerce import handle, signing_keys, wp_specialchars_decode

FIXTURES = Path(__file__).parent / "fixtures"
ORDER_CREATED = (FIXTURES / "woocommerce_order_created.json").read_bytes()

# The secret as stored in WooCommerce (entities as WordPress saved them) and as it signs with it.
STORED_SECRET = "s3cr&amp;t-&#039;quote&#39;-&lt;x&gt;"
DECODED_SECRET = "s3cr&t-'quote'-<x>"
ENTITY_SECRET = "caf&eacute;-&nbsp;&#60-key"  # nothing here is decoded by wp_specialchars_decode

# Vectors computed with OpenSSL 3.0, independently of the code under test:
#   openssl dgst -sha256 -hmac "s3cr&t-'quote'-<x>" -binary < tests/fixtures/woocommerce_order_created.json | base64
SIG_ORDER_CREATED = "h7eeyJusgWpFJ/0hcV6leXIW8ibtPMTpg1AuPjH83lA="
#   openssl dgst -sha256 -hmac 's3cr&amp;t-&#039;quote&#39;-&lt;x&gt;' -binary \
#     < tests/fixtures/woocommerce_order_created.json | base64
SIG_ORDER_CREATED_LEGACY = "TTl1ewTFOw6cXRJ82I5W8jakbe7kfpE4pwtKTMvvg5Q="
#   openssl dgst -sha256 -hmac 'caf&eacute;-&nbsp;&#60-key' -binary \
#     < tests/fixtures/woocommerce_order_created.json | base64
SIG_ORDER_CREATED_ENTITY_SECRET = "WX/ZeKuf8o7tkNfI1EzMZRZ9jggg1QrfAZ9ZkM1YJxg="
#   printf '%s' '{"id":4711}' | openssl dgst -sha256 -hmac "s3cr&t-'quote'-<x>" -binary | base64
SIG_DELETED = "erqsCiZhB/ARlFl/urXvMuxgfSf9l22OJke4GJXX5rI="


def endpoint(secret: str = STORED_SECRET, *, legacy: bool = False) -> Endpoint:
    return Endpoint(id="shop", kind="woocommerce", secret=SecretStr(secret), woocommerce_legacy_secret=legacy)


def sign(body: bytes, key: str = DECODED_SECRET) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def headers(signature: str | None, topic: str | None = "order.created") -> dict[str, str]:
    out = {
        "content-type": "application/json",
        "user-agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)",
        "x-wc-webhook-source": "https://shop.example/",
        "x-wc-webhook-id": "7",
        "x-wc-webhook-delivery-id": "5f0e2c1b8a7d6e5f4a3b2c1d0e9f8a7b",
    }
    if topic is not None:
        resource, _, event = topic.partition(".")
        out |= {"x-wc-webhook-topic": topic, "x-wc-webhook-resource": resource, "x-wc-webhook-event": event}
    if signature is not None:
        out["x-wc-webhook-signature"] = signature
    return out


def request(body: bytes, signature: str | None, topic: str | None = "order.created") -> Incoming:
    return Incoming(method="POST", headers=headers(signature, topic), query={}, body=body)


def order(order_id: int, modified: str | None) -> bytes:
    """A small order as WooCommerce encodes it (escaped slashes, \\uXXXX, float price)."""
    fields = {"id": order_id, "status": "processing", "billing": {"first_name": "J\u00f6rg"}}
    if modified is not None:
        fields["date_modified_gmt"] = modified
    fields["line_items"] = [{"sku": "KOP-1", "quantity": 3, "price": 12.356666666666667}]
    fields["_links"] = {"self": [{"href": "https://shop.example/wp-json/wc/v3/orders/1"}]}
    return json.dumps(fields, separators=(",", ":")).replace("/", "\\/").encode()


# --- wp_specialchars_decode -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "decoded"),
    [
        ("plain-secret", "plain-secret"),
        ("", ""),
        ("a&amp;b", "a&b"),
        ("&lt;&gt;&quot;&#039;&#x27;", "<>\"''"),
        ("&#39;&#0039;&#x0027;&#X27;", "''''"),
        ("&#34;&#x22;&#60;&#062;&#38;&#x26;&#X0026;", '""<>&&&'),
        ("&amp;lt;", "&lt;"),  # one pass: what a replacement produced is not decoded again
        ("&amp;amp;", "&amp;"),
        ("&eacute;&nbsp;&euro;&copy;", "&eacute;&nbsp;&euro;&copy;"),
        ("&#60&lt", "&#60&lt"),  # no semicolon: literal
        ("&AMP;&LT;", "&AMP;&LT;"),  # named entities are case-sensitive
        ("&#233;&#x41;", "&#233;&#x41;"),  # only the special characters' numbers
        ("&&amp;;", "&&;"),
    ],
)
def test_decodes_secret_like_wp_specialchars_decode(stored, decoded):
    assert wp_specialchars_decode(stored) == decoded


@pytest.mark.parametrize("stored", ["caf&eacute;", "a&nbsp;b", "&#60x", "&#233;", "&lt"])
def test_secret_decoding_differs_from_html_unescape(stored):
    assert wp_specialchars_decode(stored) != html.unescape(stored)


def test_legacy_endpoint_signs_with_the_secret_as_stored():
    assert signing_keys(endpoint(legacy=True)) == (STORED_SECRET.encode(),)
    assert signing_keys(endpoint()) == (STORED_SECRET.encode(), DECODED_SECRET.encode())
    assert signing_keys(endpoint(DECODED_SECRET)) == (DECODED_SECRET.encode(),)  # nothing to decode: one key


@pytest.mark.parametrize(
    "secret",
    ["Kp&lt;7", "a&b", "x&amp;y", "q\"u'o&quot;te&#039;", "café-ß-€-&amp;", "&&amp;;&lt;&gt;", "plain-ASCII-key"],
)
def test_the_configured_key_is_accepted_verbatim_and_in_its_decoded_form(secret):
    """The admin shows the key WooCommerce signs with; decoding it again broke keys such as `Kp&lt;7`
    (every delivery refused, the hook disabled). A stored form (database, REST API) decodes to it."""
    for key in {secret, wp_specialchars_decode(secret)}:
        assert handle(request(ORDER_CREATED, sign(ORDER_CREATED, key)), endpoint(secret)).status == 202
    with pytest.raises(SignatureRejected):
        handle(request(ORDER_CREATED, sign(ORDER_CREATED, secret + "x")), endpoint(secret))


# --- signature vectors ----------------------------------------------------------------------------


def test_accepts_openssl_vector_with_entity_encoded_secret():
    outcome = handle(request(ORDER_CREATED, SIG_ORDER_CREATED), endpoint())
    assert outcome.status == 202
    assert [e.resource_id for e in outcome.events] == ["4711"]


def test_accepts_openssl_vector_signed_with_undecoded_entities():
    outcome = handle(request(ORDER_CREATED, SIG_ORDER_CREATED_ENTITY_SECRET), endpoint(ENTITY_SECRET))
    assert outcome.status == 202


def test_the_stored_form_is_accepted_verbatim_and_a_legacy_endpoint_takes_only_it():
    """The configured value as it stands always verifies (a key that itself holds entity-like text);
    only a legacy endpoint (WooCommerce <= 3.5 signs with the stored form) refuses the decoded one."""
    assert handle(request(ORDER_CREATED, SIG_ORDER_CREATED_LEGACY), endpoint(legacy=True)).status == 202
    assert handle(request(ORDER_CREATED, SIG_ORDER_CREATED_LEGACY), endpoint()).status == 202
    with pytest.raises(SignatureRejected):
        handle(request(ORDER_CREATED, SIG_ORDER_CREATED), endpoint(legacy=True))


def test_test_signer_agrees_with_openssl():
    assert sign(ORDER_CREATED) == SIG_ORDER_CREATED
    assert sign(b'{"id":4711}') == SIG_DELETED


def test_rejects_html_unescaped_secret_signature():
    wrong = sign(ORDER_CREATED, html.unescape(ENTITY_SECRET))
    with pytest.raises(SignatureRejected) as caught:
        handle(request(ORDER_CREATED, wrong), endpoint(ENTITY_SECRET))
    assert caught.value.reason == "bad_signature"


# --- events ---------------------------------------------------------------------------------------


def test_order_created_becomes_one_event_with_the_parsed_payload():
    (event,) = handle(request(ORDER_CREATED, SIG_ORDER_CREATED), endpoint()).events
    assert event.topic == "order.created"
    assert event.resource == "order"
    assert event.resource_id == "4711"
    assert event.delivery_key == "order.created:4711:" + body_digest(ORDER_CREATED)
    assert event.since is None
    assert event.read_payload()["billing"]["city"] == "K\u00f6ln"
    assert event.read_payload()["line_items"][1]["price"] == 12.356666666666667
    assert event.read_payload()["_links"]["self"][0]["href"] == "https://shop.example/wp-json/wc/v3/orders/4711"
    assert event.headers == {
        "webhook_id": "7",
        "delivery_id": "5f0e2c1b8a7d6e5f4a3b2c1d0e9f8a7b",
        "source": "https://shop.example/",
    }


def test_kept_headers_never_include_the_signature():
    (event,) = handle(request(ORDER_CREATED, SIG_ORDER_CREATED), endpoint()).events
    assert SIG_ORDER_CREATED not in event.headers.values()


def test_deleted_order_is_keyed_on_the_body_digest():
    body = b'{"id":4711}'
    (event,) = handle(request(body, SIG_DELETED, "order.deleted"), endpoint()).events
    assert (event.topic, event.resource, event.resource_id) == ("order.deleted", "order", "4711")
    assert event.delivery_key == "order.deleted:4711:" + body_digest(body)
    assert event.read_payload() == {"id": 4711}


def test_two_deliveries_of_the_same_order_state_share_a_delivery_key():
    body = order(1001, "2026-03-14T13:02:13")
    first = handle(request(body, sign(body)), endpoint()).events[0]
    second = handle(request(body, sign(body)), endpoint()).events[0]
    assert first.delivery_key == second.delivery_key


def test_a_later_modification_gets_a_new_delivery_key():
    before = order(1001, "2026-03-14T13:02:13")
    after = order(1001, "2026-03-14T13:02:14")
    first = handle(request(before, sign(before), "order.updated"), endpoint()).events[0]
    second = handle(request(after, sign(after), "order.updated"), endpoint()).events[0]
    assert first.delivery_key != second.delivery_key


def test_a_change_within_the_same_second_of_date_modified_gets_a_new_delivery_key():
    pending = order(1002, "2026-03-14T13:02:13").replace(b'"processing"', b'"pending"')
    paid = order(1002, "2026-03-14T13:02:13")
    first = handle(request(pending, sign(pending), "order.updated"), endpoint()).events[0]
    second = handle(request(paid, sign(paid), "order.updated"), endpoint()).events[0]
    assert first.delivery_key != second.delivery_key


def test_action_topic_uses_arg_as_resource_id():
    body = b'{"action":"woocommerce_order_status_completed","arg":4711}'
    (event,) = handle(request(body, sign(body), "action.woocommerce_order_status_completed"), endpoint()).events
    assert (event.topic, event.resource, event.resource_id) == (
        "action.woocommerce_order_status_completed",
        "action",
        "4711",
    )
    assert event.delivery_key.startswith("action.woocommerce_order_status_completed:4711:sha256:")


def test_action_topic_without_scalar_arg_has_no_resource_id():
    body = b'{"action":"woocommerce_cart_updated","arg":{"a":1}}'
    (event,) = handle(request(body, sign(body), "action.woocommerce_cart_updated"), endpoint()).events
    assert event.resource_id is None


# --- ping -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=UTF-8", None]
)
def test_answers_ping_with_200_and_no_events(content_type):
    ping_headers = {"user-agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)"}
    if content_type:
        ping_headers["content-type"] = content_type
    outcome = handle(Incoming("POST", ping_headers, {}, b"webhook_id=7"), endpoint())
    assert (outcome.status, outcome.events, outcome.body) == (200, [], "pong")


@pytest.mark.parametrize(
    ("body", "extra"),
    [
        (b"webhook_id=7&x=1", {}),
        (b"webhook_id=", {}),
        (b"webhook_id=7\n", {}),
        (b"webhook_id=abc", {}),
        (b'{"webhook_id":7}', {}),
        (b"webhook_id=7", {"x-wc-webhook-topic": "order.created"}),
        (b"webhook_id=7", {"content-type": "application/json"}),
    ],
)
def test_rejects_anything_else_unsigned_as_missing_signature(body, extra):
    with pytest.raises(SignatureRejected) as caught:
        handle(Incoming("POST", extra, {}, body), endpoint())
    assert caught.value.status == 401
    assert caught.value.reason == "missing_signature"
    assert caught.value.message == "X-WC-Webhook-Signature header is missing"


# --- rejections -----------------------------------------------------------------------------------


def test_rejects_tampered_body_with_401():
    tampered = ORDER_CREATED.replace(b'"total":"42.02"', b'"total":"42.03"')
    assert tampered != ORDER_CREATED
    with pytest.raises(SignatureRejected) as caught:
        handle(request(tampered, SIG_ORDER_CREATED), endpoint())
    assert (caught.value.status, caught.value.reason) == (401, "bad_signature")


def test_rejects_wrong_secret_with_401():
    with pytest.raises(SignatureRejected) as caught:
        handle(request(ORDER_CREATED, SIG_ORDER_CREATED), endpoint("another-secret"))
    assert caught.value.status == 401


def test_rejection_message_never_contains_secret_or_signatures():
    bad = sign(ORDER_CREATED, "nope")
    with pytest.raises(SignatureRejected) as caught:
        handle(request(ORDER_CREATED, bad), endpoint())
    text = str(caught.value)
    for secret in (STORED_SECRET, DECODED_SECRET, SIG_ORDER_CREATED, bad):
        assert secret not in text


def test_rejects_missing_signature_header_with_401_missing_signature():
    with pytest.raises(SignatureRejected) as caught:
        handle(request(ORDER_CREATED, None), endpoint())
    assert (caught.value.status, caught.value.reason) == (401, "missing_signature")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body is not valid JSON"),
        (b"[1,2]", "body is not a JSON object"),
        (b'{"id":NaN}', "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not valid UTF-8"),
        (b'{"status":"processing"}', "id is missing"),
        (b'{"id":null}', "id is not an integer or a non-empty string"),
        (b'{"id":true}', "id is not an integer or a non-empty string"),
    ],
)
def test_rejects_malformed_body_with_valid_signature_with_400(body, message):
    with pytest.raises(MalformedRequest) as caught:
        handle(request(body, sign(body)), endpoint())
    assert caught.value.status == 400
    assert caught.value.message == message


@pytest.mark.parametrize("topic", [None, "", "order", "order.", ".created", "order created"])
def test_rejects_missing_or_shapeless_topic_with_400(topic):
    with pytest.raises(MalformedRequest) as caught:
        handle(request(ORDER_CREATED, SIG_ORDER_CREATED, topic), endpoint())
    assert "X-WC-Webhook-Topic header" in caught.value.message
