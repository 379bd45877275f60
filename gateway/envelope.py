"""The envelope: what one accepted event looks like on the queue.

A handler turns a verified request into `Event`s; the receiver wraps each in an `Envelope`
(adding endpoint, source kind and receive time) and that envelope is the single argument of
the RQ job. It never carries credentials: only what the sender sent and where it came from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True, slots=True)
class Event:
    """One change a source told us about, as a handler understood it.

    `delivery_key` identifies the delivery (not the resource): two deliveries with the same
    key are the same event and only the first becomes a job. `since` is set for "re-read the
    collection" notifications (Business Central `collection` change type). `payload_json` is the
    payload's JSON text as received, when that text is strict JSON (`handlers.signatures.object_members`):
    the envelope embeds it as it is, and `payload` may then be None (the receiver reads only the members it
    needs; `read_payload` parses the text).
    """

    topic: str
    resource: str
    resource_id: str | None
    delivery_key: str
    payload: Any
    since: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    payload_json: bytes | None = field(default=None, repr=False)

    def read_payload(self) -> Any:
        """The payload as a value: `payload`, or `payload_json` parsed when only the text was kept."""
        if self.payload is None and self.payload_json is not None:
            return json.loads(self.payload_json)
        return self.payload


class Envelope(BaseModel):
    """An accepted event, as queued. Serialised to JSON as the job's only argument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str  # endpoint kind: woocommerce, squarespace, businesscentral, exactonline, or a poller
    endpoint: str  # endpoint (or system, for pollers) id from the config
    topic: str  # e.g. order.created, order.update, customers.updated
    resource: str  # order, product, customer, ...
    resource_id: str | None
    delivery_key: str
    received_at: datetime
    payload: Any
    since: str | None = None
    headers: dict[str, str] = {}

    @classmethod
    def wrap(cls, event: Event, *, source: str, endpoint: str, received_at: datetime | None = None) -> Envelope:
        return cls(
            source=source,
            endpoint=endpoint,
            topic=event.topic,
            resource=event.resource,
            resource_id=event.resource_id,
            delivery_key=event.delivery_key,
            received_at=received_at or datetime.now(UTC),
            payload=event.read_payload(),
            since=event.since,
            headers=event.headers,
        )

    @property
    def dedupe_id(self) -> str:
        """Stable, fixed-length id of the delivery within its endpoint (safe to use in Redis keys)."""
        return dedupe_id_of(self.endpoint, self.delivery_key)


def dedupe_id_of(endpoint: str, delivery_key: str) -> str:
    """`Envelope.dedupe_id` without an envelope."""
    return hashlib.sha256(f"{endpoint}\x00{delivery_key}".encode()).hexdigest()[:40]


def body_digest(body: bytes) -> str:
    """Digest used as a delivery key when the body itself is the only identity of a delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
