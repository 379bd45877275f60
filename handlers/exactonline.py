"""Exact Online webhooks.

A notification is `{"Content": {...}, "HashCode": "..."}` where HashCode is the upper-case hex
HMAC-SHA256 of the `Content` object's text exactly as it appears in the body, keyed with the app's
webhook secret. The span of that text is found with a top-level scanner; the body is never
re-serialised. Notifications are thin (Topic, Division, Action, Key, ExactOnlineEndpoint): the
worker fetches the record.

Subscribing makes Exact POST an empty body, which must be answered 200 (or 201); anything else
is retried up to ten times over about 34 hours.
"""

from __future__ import annotations

from collections.abc import Callable
from json.decoder import scanstring as _scanstring  # type: ignore[attr-defined]  # not in typeshed
from typing import Any

from gateway.config import Endpoint
from gateway.envelope import Event, body_digest
from gateway.errors import MalformedRequest, SignatureRejected
from handlers.base import Incoming, Outcome
from handlers.signatures import JSON, check_nesting, decode_text, equal_ignoring_case, hmac_sha256, unicode_only, utf8

# json's string scanner (_json's, or the pure-Python one without it), typed as typeshed has _json.scanstring.
scanstring: Callable[[str, int, bool], tuple[str, int]] = _scanstring
_WHITESPACE = " \t\n\r"


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def top_level_members(text: str) -> dict[str, tuple[Any, str]]:
    """Member name -> (value, value's text exactly as written) of the JSON object `text`.

    ValueError if `text` is not exactly one JSON object. A repeated member name is refused: the
    value that is verified must be the value that is read.
    """
    return {name: (value, text[start:end]) for name, (value, start, end, _) in _member_spans(text).items()}


def _member_spans(text: str) -> dict[str, tuple[Any, int, int, int]]:
    """Member name -> (value, start, end, end with the whitespace before the next ',' or '}')."""
    index = _skip(text, 0)
    if not text.startswith("{", index):
        raise ValueError("not an object")
    index = _skip(text, index + 1)
    members: dict[str, tuple[Any, int, int, int]] = {}
    if text.startswith("}", index):
        index += 1
    else:
        while True:
            if not text.startswith('"', index):
                raise ValueError("expected a member name")
            name, index = scanstring(text, index + 1, True)
            index = _skip(text, index)
            if not text.startswith(":", index):
                raise ValueError("expected ':'")
            start = _skip(text, index + 1)
            value, end = JSON.raw_decode(text, start)
            if name in members:
                raise ValueError("repeated member name")
            index = _skip(text, end)
            members[name] = (value, start, end, index)
            if text.startswith(",", index):
                index = _skip(text, index + 1)
            elif text.startswith("}", index):
                index += 1
                break
            else:
                raise ValueError("expected ',' or '}'")
    if _skip(text, index) != len(text):
        raise ValueError("extra data after the object")
    return members


def _required(content: dict[str, Any], name: str, *, integer: bool = False) -> str:
    value = content.get(name)
    if value is None:
        raise MalformedRequest(f"Content.{name} is missing")
    allowed = (str, int) if integer else (str,)
    if isinstance(value, bool) or not isinstance(value, allowed) or value == "":
        raise MalformedRequest(f"Content.{name} is not a non-empty {'string or integer' if integer else 'string'}")
    return str(value)


def handle(incoming: Incoming, endpoint: Endpoint) -> Outcome:
    if not incoming.body.strip():
        return Outcome(events=[], status=200, body="ok")

    text = decode_text(incoming.body)
    if not text.lstrip(_WHITESPACE).startswith("{"):
        raise MalformedRequest("body is not a JSON object")
    check_nesting(text)
    try:
        members = _member_spans(text)
    except (ValueError, RecursionError):
        raise MalformedRequest("body is not valid JSON (or repeats a member)") from None
    hash_code = members.get("HashCode", (None, 0, 0, 0))[0]
    if hash_code is None:
        raise SignatureRejected("HashCode is missing", reason="missing_signature")
    if "Content" not in members:
        raise MalformedRequest("Content is missing")
    content, start, end, padded_end = members["Content"]
    raw_content = utf8(text[start:end])  # the very bytes that were sent: the body was strict UTF-8
    # Exact signs the Content object's text; a sender that signed it with the whitespace written after
    # it (before the next ',' or '}') is accepted too: both texts are the sender's, compared in constant time.
    secret = utf8(endpoint.secret.get_secret_value())
    candidates = [raw_content] + ([utf8(text[start:padded_end])] if padded_end != end else [])
    matched = False
    for candidate in candidates:
        matched |= isinstance(hash_code, str) and equal_ignoring_case(hmac_sha256(secret, candidate).hex(), hash_code)
    if not matched:
        raise SignatureRejected("HashCode does not match Content", reason="bad_signature")

    if not isinstance(content, dict):
        raise MalformedRequest("Content is not a JSON object")
    unicode_only(content)
    topic = _required(content, "Topic")
    action = _required(content, "Action")
    key = _required(content, "Key")
    division = _required(content, "Division", integer=True)
    created = content.get("EventCreatedOn")
    # Without a creation time the signed Content itself is the delivery's identity.
    when = created if isinstance(created, str) and created else body_digest(raw_content)
    event = Event(
        topic=f"{topic}.{action}",
        resource=topic,
        resource_id=key,
        delivery_key=f"{division}:{topic}:{key}:{action}:{when}",
        payload=content,
        payload_json=raw_content,  # strict JSON (checked above): stored as sent, not encoded again
    )
    return Outcome(events=[event], status=200)
