"""Squarespace webhooks.

`Squarespace-Signature` is the hex HMAC-SHA256 of the raw body, keyed with the hex-decoded
subscription secret (the secret is returned only when the subscription is created or its secret
rotated). Koppel's own subscriptions' secrets come with the request (`Incoming.secrets`, stored by the
connector, connectors/issued.py); every secret is tried, each comparison in constant time, so during a
rotation's grace period the old secret and the new one both verify.

Delivery is at least once for up to 48 hours, unordered: the notification `id` is the delivery key.
Topics: `order.create`, `order.update` (`data.update` says what changed) and `extension.uninstall`.
"""

from __future__ import annotations

from typing import Any

from gateway.config import Endpoint
from gateway.envelope import Event
from gateway.errors import MalformedRequest, SignatureRejected
from handlers.base import Incoming, Outcome
from handlers.signatures import equal_ignoring_case, header, hmac_sha256, object_members

SIGNATURE = "squarespace-signature"
_MEMBERS = ("id", "topic", "data", "websiteId")  # what the envelope needs of the body


def _text(payload: dict[str, Any], name: str, path: str | None = None) -> str:
    """A required non-empty string (or integer) field, as text."""
    path = path or name
    if name not in payload or payload[name] is None:
        raise MalformedRequest(f"{path} is missing")
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise MalformedRequest(f"{path} is not a non-empty string")
    return str(value)


def _resource_id(resource: str, payload: dict[str, Any]) -> str | None:
    if resource == "order":
        data = payload.get("data")
        if not isinstance(data, dict):
            raise MalformedRequest("data is missing" if data is None else "data is not a JSON object")
        return _text(data, "orderId", "data.orderId")
    if resource == "extension":
        website = payload.get("websiteId")
        return str(website) if isinstance(website, str) and website else None
    return None  # a topic added after this was written: queued, the worker decides


def _secrets(incoming: Incoming, endpoint: Endpoint) -> list[str]:
    """The endpoint's configured secret (a subscription made by hand), then those Squarespace issued for
    the subscriptions Koppel made (stored at create and rotation; a rotated-out one during its grace)."""
    return [endpoint.secret.get_secret_value(), *incoming.secrets]


def _signed_with(secret: str, body: bytes, signature: str) -> bool:
    """Whether `signature` is the hex HMAC-SHA256 of `body` keyed with the hex-decoded `secret` (a secret
    that is not hex verifies nothing)."""
    try:
        key = bytes.fromhex(secret)
    except ValueError:
        return False
    return equal_ignoring_case(hmac_sha256(key, body).hex(), signature)


def handle(incoming: Incoming, endpoint: Endpoint) -> Outcome:
    signature = header(incoming.headers, SIGNATURE)
    if signature is None or not signature.strip():
        raise SignatureRejected("Squarespace-Signature header is missing", reason="missing_signature")
    if not any(_signed_with(secret, incoming.body, signature) for secret in _secrets(incoming, endpoint)):
        raise SignatureRejected("Squarespace-Signature does not match the body", reason="bad_signature")

    body = object_members(incoming.body, _MEMBERS)  # the rest of the body is stored as sent
    payload = body.members
    notification_id = _text(payload, "id")
    topic = _text(payload, "topic")
    resource, dot, event_name = topic.partition(".")
    if not (resource and dot and event_name):
        raise MalformedRequest("topic is not of the form resource.event")
    event = Event(
        topic=topic,
        resource=resource,
        resource_id=_resource_id(resource, payload),
        delivery_key=notification_id,
        payload=body.payload,
        payload_json=body.text,
    )
    return Outcome(events=[event], status=202)
