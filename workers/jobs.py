"""RQ job functions. The receiver and the pollers enqueue `process_event(envelope)`."""

from __future__ import annotations

import logging
from typing import Any

from gateway.envelope import Envelope
from workers import runtime

log = logging.getLogger("koppel.worker")

# Which flow a source's resource name belongs to (WooCommerce, Squarespace, BC, Exact spellings).
_FLOW_OF_RESOURCE = {
    "order": "orders",
    "salesorders": "orders",
    "salesorderheaders": "orders",
    "salesinvoices": "orders",
    "customer": "customers",
    "customers": "customers",
    "accounts": "customers",
    "product": "products",
    "items": "products",
    "stockpositions": "stock",
}


def flow_of(resource: str) -> str | None:
    return _FLOW_OF_RESOURCE.get(resource.lower())


def process_event(envelope_data: dict[str, Any]) -> dict[str, Any]:
    """Route one accepted event to the flows of the integrations fed by its endpoint.

    Returns a summary kept as the job's result (no payload data: only ids and outcomes).
    """
    envelope = Envelope.model_validate(envelope_data)
    config = runtime.current().config
    flow = flow_of(envelope.resource)
    integrations = [i for i in config.integrations_from(envelope.endpoint) if flow in i.flows]
    summary: dict[str, Any] = {
        "endpoint": envelope.endpoint,
        "topic": envelope.topic,
        "resource_id": envelope.resource_id,
        "flow": flow,
        "integrations": [i.id for i in integrations],
        "outcome": "received",
    }
    if not integrations:
        summary["outcome"] = "no integration takes this event"
    log.info(
        "event %s %s from %s: %s",
        envelope.topic,
        envelope.resource_id or "-",
        envelope.endpoint,
        summary["outcome"],
    )
    return summary
