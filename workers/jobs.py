"""RQ job functions. The receiver and the pollers enqueue `process_event(envelope)`."""

from __future__ import annotations

import logging
from typing import Any

from gateway.envelope import Envelope
from gateway.errors import PermanentError, TransientError
from workers import runtime
from workers.flows import flow_for
from workers.policy import fail_permanently, note_transient, resource_lock

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
    """Run the event through the flow of every integration its endpoint feeds.

    Work on one resource of one integration is serialised (a Redis lock), so two events for the
    same order never race. Returns a summary kept as the job's result: ids and outcomes, no payload.
    """
    try:
        envelope = Envelope.model_validate(envelope_data)
    except ValueError:
        error = PermanentError("the job's argument is not a Koppel event envelope")
        fail_permanently(error)
        raise error from None
    rt = runtime.current()
    flow = flow_of(envelope.resource)
    integrations = [i for i in rt.config.integrations_from(envelope.endpoint) if flow in i.flows]
    summary: dict[str, Any] = {
        "endpoint": envelope.endpoint,
        "topic": envelope.topic,
        "resource_id": envelope.resource_id,
        "flow": flow,
        "integrations": {},
    }
    if not integrations:
        summary["outcome"] = "no integration takes this event"
    for integration in integrations:
        target = rt.config.system(integration.target)
        assert target is not None  # the config validator guarantees it
        func = flow_for(flow or "", target.kind)
        if func is None:
            summary["integrations"][integration.id] = f"no {flow} flow to {target.kind} yet"
            continue
        try:
            with resource_lock(rt.connection, integration.id, envelope.resource, envelope.resource_id or "-"):
                summary["integrations"][integration.id] = func(integration, envelope, rt)
        except PermanentError as error:
            fail_permanently(error)
            log.warning("event %s %s: permanent failure: %s", envelope.topic, envelope.resource_id, error)
            raise
        except TransientError as error:
            note_transient(error)
            log.info("event %s %s: will retry: %s", envelope.topic, envelope.resource_id, error)
            raise
    log.info("event %s %s from %s done", envelope.topic, envelope.resource_id or "-", envelope.endpoint)
    return summary
