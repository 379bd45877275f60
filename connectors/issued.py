"""Webhook secrets a system issued (rather than took from Koppel), kept where the receiver finds them.

Squarespace makes a subscription's signing secret itself: it is in the answer to the create (and to a
rotation) only, so Koppel cannot put it in the config file. The connector that creates or rotates a
subscription stores the secret here, per endpoint and subscription; the receiver (gateway/app.py) reads
the endpoint's live secrets and passes them to the handler with the request (`Incoming.secrets`), beside
the endpoint's configured secret.

    koppel:cache:{endpoint}:issued_secrets   hash: subscription id → {"secret", "previous", "previous_until"},
                                             encrypted (gateway/vault.py; an entry stored before that as JSON
                                             is still read, and written encrypted at its next rotation)

A rotation keeps the old secret as `previous` for `grace` seconds: notifications signed before the
rotation (still being delivered or retried) verify, while the new secret verifies from the moment it is
stored. Nothing is lost between Squarespace issuing the new secret and Koppel storing it either: a
notification refused in that instant is retried by the sender (Squarespace: for up to 48 hours), and the
reconciliation poll reads what any notification missed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import redis

from gateway import keys, vault

log = logging.getLogger(__name__)

__all__ = ["forget", "issued_key", "live", "remember", "rotated", "subscriptions"]


def issued_key(endpoint_id: str) -> str:
    return keys.cache(endpoint_id, "issued_secrets")


def _entry(raw: Any) -> dict[str, Any]:
    """A stored entry (an unreadable one, or one no given key opens, is empty: its secret verifies nothing)."""
    try:
        text = keys.text(raw) if vault.is_plain(raw) else vault.vault().open(
            raw, what="a webhook secret the system issued", fix="rotate the subscription's secret")
        value = json.loads(text)
    except vault.SecretUnreadable as unreadable:
        log.error("%s", unreadable)
        return {}
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _sealed(entry: dict[str, Any]) -> str:
    return vault.vault().seal(json.dumps(entry), what="the webhook secret the system issued")


def remember(connection: redis.Redis, endpoint_id: str, subscription_id: str, secret: str) -> None:
    """The secret of a new subscription (no previous one)."""
    connection.hset(issued_key(endpoint_id), subscription_id, _sealed({"secret": secret}))


def rotated(connection: redis.Redis, endpoint_id: str, subscription_id: str, secret: str, *, grace: float,
            now: float | None = None) -> None:  # fmt: skip
    """A subscription's new secret; the one it replaces stays valid for `grace` seconds."""
    key = issued_key(endpoint_id)
    old = _entry(connection.hget(key, subscription_id)).get("secret")
    entry: dict[str, Any] = {"secret": secret}
    if isinstance(old, str) and old and old != secret:
        entry |= {"previous": old, "previous_until": (time.time() if now is None else now) + grace}
    connection.hset(key, subscription_id, _sealed(entry))


def forget(connection: redis.Redis, endpoint_id: str, subscription_id: str) -> None:
    connection.hdel(issued_key(endpoint_id), subscription_id)


def subscriptions(connection: redis.Redis, endpoint_id: str) -> set[str]:
    """The subscriptions whose secrets are stored for the endpoint."""
    return {keys.text(field) for field in connection.hkeys(issued_key(endpoint_id))}


def live(stored: Mapping[Any, Any], now: float) -> tuple[str, ...]:
    """The secrets a request may be signed with, from the endpoint's stored hash (as HGETALL returns it):
    every current one, and every previous one still in its grace period. Unreadable entries are skipped."""
    found: list[str] = []
    for raw in stored.values():
        entry = _entry(raw)
        secret = entry.get("secret")
        if isinstance(secret, str) and secret:
            found.append(secret)
        previous, until = entry.get("previous"), entry.get("previous_until")
        if isinstance(previous, str) and previous and isinstance(until, int | float) and until > now:
            found.append(previous)
    return tuple(dict.fromkeys(found))
