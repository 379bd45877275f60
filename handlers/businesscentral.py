"""Business Central (API v2.0) webhooks.

Creating or renewing a subscription makes BC call the notification URL with a `validationToken`
query parameter; it must be echoed as plain text with 200 within about five seconds.

Notifications are not signed: each item carries the subscription's `clientState`, which is the
endpoint secret. One POST may hold items of several subscriptions; every item must carry the
secret or nothing is queued. BC retries only on 408, 429 and 5xx; any other failure deletes the
subscription, so only a request that is really wrong is refused.

`changeType` is created, updated, deleted or `collection`: more changes than BC batches (1000 in
30 s online), delivered as the collection URL with a `$filter` to re-read. The filter's field
name varies (`lastModifiedDateTime`, `lastDateTimeModified`), so the datetime after `gt` is read
from the filter rather than from a known field.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from gateway.config import Endpoint
from gateway.envelope import Event
from gateway.errors import MalformedRequest, SignatureRejected
from handlers.base import Incoming, Outcome
from handlers.signatures import equal, load_json_object

MAX_TOKEN = 1024
CLIENT_STATE = "clientState"

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)(?:\((.*)\))?", re.DOTALL)
_SINCE = re.compile(
    r"[A-Za-z_][A-Za-z0-9_/]*\s+g[te]\s+(?:datetime)?'?"
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)",
    re.IGNORECASE,
)


def _query_value(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    if value is None:
        value = next((v for k, v in query.items() if k.lower() == name.lower()), None)
    return value


def _handshake(token: str) -> Outcome:
    if token == "":
        raise MalformedRequest("validationToken is empty")
    if len(token) > MAX_TOKEN:
        raise MalformedRequest(f"validationToken is longer than {MAX_TOKEN} characters")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in token):
        raise MalformedRequest("validationToken contains control or unencodable characters")
    return Outcome(events=[], status=200, body=token, media_type="text/plain; charset=utf-8")


def _split_path(path: str) -> list[str]:
    """Path segments, not splitting inside a parenthesised key or a quoted string."""
    segments: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in path:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth = max(depth - 1, 0)
        elif char == "/" and depth == 0 and not quoted:
            segments.append("".join(current))
            current = []
            continue
        current.append(char)
    segments.append("".join(current))
    return [segment for segment in segments if segment]


def _key(raw: str | None) -> str | None:
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == "'":
        key = key[1:-1].replace("''", "'")
    elif len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    return key or None


def _since(query: str) -> str | None:
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if unquote(name).strip().lower() == "$filter":
            # Spaces may come as %20 or as +; a + may also be a literal offset sign.
            match = _SINCE.search(unquote(value)) or _SINCE.search(unquote_plus(value))
            if match is not None:
                return match.group(1)
    return None


def parse_resource(resource: str) -> tuple[str, str | None, str | None]:
    """(entity, key, since) of a notification's resource URL; since is set only when it filters."""
    path, mark, query = resource.partition("?")
    path = unquote(path)
    if not mark:
        path, _, query = path.partition("?")  # the whole URL was percent-encoded
    if "://" in path:
        path = urlsplit(path).path
    segments = _split_path(path)
    match = _SEGMENT.fullmatch(segments[-1]) if segments else None
    if match is None:
        raise ValueError("resource is not an API resource path")
    return match.group(1), _key(match.group(2)), _since(query) if query else None


def _field(item: dict[str, Any], name: str, index: int) -> str:
    value = item.get(name)
    if value is None:
        raise MalformedRequest(f"value[{index}].{name} is missing")
    if not isinstance(value, str) or not value:
        raise MalformedRequest(f"value[{index}].{name} is not a non-empty string")
    return value


def _verify(items: list[Any], secret: str) -> None:
    """Every item must carry the client state; checked for all before anything is read."""
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedRequest(f"value[{index}] is not a JSON object")
        state = item.get(CLIENT_STATE)
        if state is None:
            raise SignatureRejected(f"value[{index}].clientState is missing", reason="missing_signature")
        if not isinstance(state, str) or not equal(secret, state):
            raise SignatureRejected(f"value[{index}].clientState does not match", reason="bad_signature")


def _event(item: dict[str, Any], index: int) -> Event:
    subscription = _field(item, "subscriptionId", index)
    resource = _field(item, "resource", index)
    change = _field(item, "changeType", index)
    modified = item.get("lastModifiedDateTime")
    if modified is not None and not isinstance(modified, str):
        raise MalformedRequest(f"value[{index}].lastModifiedDateTime is not a string")
    try:
        entity, key, since = parse_resource(resource)
    except ValueError:
        raise MalformedRequest(f"value[{index}].resource is not an API resource path") from None
    if change == "collection":
        key, since = None, since or modified
    else:
        since = None
    return Event(
        topic=f"{entity}.{change}",
        resource=entity,
        resource_id=key,
        delivery_key=f"{subscription}:{resource}:{change}:{modified or ''}",
        # The client state is the endpoint secret: it never travels on the queue.
        payload={name: value for name, value in item.items() if name != CLIENT_STATE},
        since=since,
    )


def handle(incoming: Incoming, endpoint: Endpoint) -> Outcome:
    token = _query_value(incoming.query, "validationToken")
    if token is not None:
        # Answered whatever the body: BC sends none, and a failed handshake blocks the subscription.
        return _handshake(token)

    payload = load_json_object(incoming.body)
    items = payload.get("value")
    if items is None:
        raise MalformedRequest("value is missing")
    if not isinstance(items, list):
        raise MalformedRequest("value is not a JSON array")
    _verify(items, endpoint.secret.get_secret_value())
    return Outcome(events=[_event(item, index) for index, item in enumerate(items)], status=202)
