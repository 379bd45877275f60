"""WooCommerce webhooks.

WooCommerce signs `X-WC-Webhook-Signature: base64(HMAC-SHA256(key, body))` over the exact bytes
it sent, where the key is the stored secret passed through WordPress's
`wp_specialchars_decode($secret, ENT_QUOTES)` (since WooCommerce 3.6; older versions, and
ClassicCommerce, sign with the secret as stored: `woocommerce_legacy_secret`).

Which form an operator configures cannot be known: the admin shows the decoded text (the very key
WooCommerce signs with), a secret copied from the database or set through the REST API is the stored
form. So the configured value is accepted verbatim, and so is its decoded form (one HMAC where the two are
the same text). Each signature is compared in constant time; the key that verified the endpoint's last
delivery is tried first, so a shop's deliveries cost one HMAC, and a signature neither key verifies costs
both, every time (what differs is only which of the two forms the shop signs with, not the secret).
Decoding the admin's text again would break a key that itself holds entity-like text (`Kp&lt;7`): every
genuine delivery refused, and WooCommerce disabling the hook.

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
from handlers.signatures import equal, header, hmac_sha256, object_members, utf8

SIGNATURE = "x-wc-webhook-signature"
TOPIC = "x-wc-webhook-topic"
KEPT_HEADERS = {
    "webhook_id": "x-wc-webhook-id",
    "delivery_id": "x-wc-webhook-delivery-id",
    "source": "x-wc-webhook-source",
}

_PING_BODY = re.compile(rb"webhook_id=[0-9]{1,20}")
_PING_MEDIA_TYPE = "application/x-www-form-urlencoded"
_MEMBERS = ("id", "arg")  # what the envelope needs of the body: the resource id (an action's argument)
_TOPIC = re.compile(r"([!-\-/-~]+)\.([!-~]+)")  # printable ASCII, the first dot splits


@functools.lru_cache(maxsize=1024)
def _keys(secret: str, legacy: bool) -> tuple[bytes, ...]:
    verbatim = utf8(secret)
    decoded = utf8(wp_specialchars_decode(secret))
    return (verbatim,) if legacy or decoded == verbatim else (verbatim, decoded)


_LAST_VERIFIED: dict[tuple[bytes, ...], bytes] = {}
"""Per set of signing keys, the key that verified the last delivery signed with another than the first (what
`_verifies` tries first); bounded like `_keys`' cache."""


def _verifies(keys: tuple[bytes, ...], body: bytes, given: str) -> bool:
    """Whether `given` is the base64 HMAC-SHA256 of `body` under one of `keys`: the key that verified last
    first, the others only when it does not."""
    first = _LAST_VERIFIED.get(keys, keys[0])
    if equal(base64.b64encode(hmac_sha256(first, body)), given):
        return True
    matched = None
    for key in keys:  # every other key compared, in constant time: no early exit
        if key != first and equal(base64.b64encode(hmac_sha256(key, body)), given):
            matched = key
    if matched is None:
        return False
    if len(_LAST_VERIFIED) >= 1024:
        _LAST_VERIFIED.clear()
    _LAST_VERIFIED[keys] = matched
    return True


def signing_keys(endpoint: Endpoint) -> tuple[bytes, ...]:
    """The HMAC keys a delivery may be signed with: the configured secret verbatim, and its decoded form
    (unless `woocommerce_legacy_secret`, whose WooCommerce signs with the stored form only). Computed once
    per secret, not per request."""
    return _keys(endpoint.secret.get_secret_value(), endpoint.woocommerce_legacy_secret)


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
    if not _verifies(signing_keys(endpoint), incoming.body, signature.strip()):
        raise SignatureRejected("X-WC-Webhook-Signature does not match the body", reason="bad_signature")

    topic = header(incoming.headers, TOPIC)
    if topic is None or not topic.strip():
        raise MalformedRequest("X-WC-Webhook-Topic header is missing")
    match = _TOPIC.fullmatch(topic.strip())
    if match is None:
        raise MalformedRequest("X-WC-Webhook-Topic header is not of the form resource.event")
    topic = match.group(0)
    resource = match.group(1)

    # Only the id is read (the dedupe key is topic, id and the body's digest); the body is stored as sent.
    body = object_members(incoming.body, _MEMBERS)
    resource_id = _resource_id(resource, body.members)
    kept = {name: value for name, key in KEPT_HEADERS.items() if (value := header(incoming.headers, key))}
    event = Event(
        topic=topic,
        resource=resource,
        resource_id=resource_id,
        delivery_key=f"{topic}:{resource_id or ''}:{body_digest(incoming.body)}",
        payload=body.payload,
        payload_json=body.text,
        headers=kept,
    )
    return Outcome(events=[event], status=202)
