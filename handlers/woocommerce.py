"""WooCommerce webhooks.

WooCommerce signs `X-WC-Webhook-Signature: base64(HMAC-SHA256(key, body))` over the exact bytes
it sent, where the key is the stored secret passed through WordPress's
`wp_specialchars_decode($secret, ENT_QUOTES)` (since WooCommerce 3.6; older versions, and
ClassicCommerce, sign with the secret as stored: `woocommerce_legacy_secret`).

When a webhook is created or re-activated WooCommerce pings the delivery URL with an unsigned
form body `webhook_id=<id>` and no `X-WC-Webhook-*` headers; it must get exactly 200.

`X-WC-Webhook-Delivery-ID` is `wp_hash(webhook id . unix seconds)`: two deliveries in one second
share it, so it is kept for tracing but deliveries are keyed on topic, resource id and a digest of
the body. The payload is built when sent, so it is the state sent: the same state delivered again
is the same bytes (a duplicate), and a change is new bytes — even within the second that
`date_modified_gmt` resolves (an order paid in the second it was created must not pass for a
repeat of its creation; the end-to-end tests met exactly that).
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

from connectors.woocommerce.wordpress import wp_specialchars_decode
from gateway.config import Endpoint
from gateway.envelope import Event, body_digest
from gateway.errors import MalformedRequest, SignatureRejected
from handlers.base import Incoming, Outcome
from handlers.signatures import equal, header, hmac_sha256, json_object, utf8

SIGNATURE = "x-wc-webhook-signature"
TOPIC = "x-wc-webhook-topic"
KEPT_HEADERS = {
    "webhook_id": "x-wc-webhook-id",
    "delivery_id": "x-wc-webhook-delivery-id",
    "source": "x-wc-webhook-source",
}

_PING_BODY = re.compile(rb"webhook_id=[0-9]{1,20}")
_PING_MEDIA_TYPE = "application/x-www-form-urlencoded"
_TOPIC = re.compile(r"([!-\-/-~]+)\.([!-~]+)")  # printable ASCII, the first dot splits


@functools.lru_cache(maxsize=1024)
def _key(secret: str, legacy: bool) -> bytes:
    return utf8(secret if legacy else wp_specialchars_decode(secret))


def signing_key(endpoint: Endpoint) -> bytes:
    """The HMAC key WooCommerce signs with (decoded once per secret, not per request)."""
    return _key(endpoint.secret.get_secret_value(), endpoint.woocommerce_legacy_secret)


def _is_ping(incoming: Incoming) -> bool:
    if any(name.lower().startswith("x-wc-webhook-") for name in incoming.headers):
        return False
    content_type = header(incoming.headers, "content-type")
    if content_type is not None and content_type.split(";")[0].strip().lower() != _PING_MEDIA_TYPE:
        return False
    return _PING_BODY.fullmatch(incoming.body) is not None


def _resource_id(resource: str, payload: dict[str, Any]) -> str | None:
    if resource == "action":
        arg = payload.get("arg")
        if isinstance(arg, bool) or not isinstance(arg, int | float | str):
            return None  # an object or list argument has no single id
        return str(arg)
    if "id" not in payload:
        raise MalformedRequest("id is missing")
    value = payload["id"]
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise MalformedRequest("id is not an integer or a non-empty string")
    return str(value)


def handle(incoming: Incoming, endpoint: Endpoint) -> Outcome:
    signature = header(incoming.headers, SIGNATURE)
    if signature is None:
        if _is_ping(incoming):
            return Outcome(events=[], status=200, body="pong")
        raise SignatureRejected("X-WC-Webhook-Signature header is missing", reason="missing_signature")
    expected = base64.b64encode(hmac_sha256(signing_key(endpoint), incoming.body))
    if not equal(expected, signature.strip()):
        raise SignatureRejected("X-WC-Webhook-Signature does not match the body", reason="bad_signature")

    topic = header(incoming.headers, TOPIC)
    if topic is None or not topic.strip():
        raise MalformedRequest("X-WC-Webhook-Topic header is missing")
    match = _TOPIC.fullmatch(topic.strip())
    if match is None:
        raise MalformedRequest("X-WC-Webhook-Topic header is not of the form resource.event")
    topic = match.group(0)
    resource = match.group(1)

    payload, payload_json = json_object(incoming.body)
    resource_id = _resource_id(resource, payload)
    kept = {name: value for name, key in KEPT_HEADERS.items() if (value := header(incoming.headers, key))}
    event = Event(
        topic=topic,
        resource=resource,
        resource_id=resource_id,
        delivery_key=f"{topic}:{resource_id or ''}:{body_digest(incoming.body)}",
        payload=payload,
        payload_json=payload_json,
        headers=kept,
    )
    return Outcome(events=[event], status=202)
