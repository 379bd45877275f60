"""RQ job functions. The receiver and the pollers enqueue `process_event(envelope)`."""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import get_current_job

from gateway.activity import Activity, ActivityLog
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
    same order never race. Every outcome, failures included, goes to the integration's activity
    log (gateway/activity.py). Returns a summary kept as the job's result: ids and outcomes, no payload.
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
    activity = ActivityLog(rt.connection)
    job = get_current_job()

    def note(integration_id: str, outcome: str, result: dict[str, Any] | None = None, reason: str = "") -> None:
        result = result or {}
        activity.record(
            Activity(
                integration=integration_id,
                flow=flow or "",
                topic=envelope.topic,
                resource_id=envelope.resource_id or "",
                outcome=outcome,
                received_at=envelope.received_at.timestamp(),
                done_at=time.time(),
                number=str(result.get("number", "")),
                target_id=str(result.get("target_id", "")),
                calls=int(result.get("calls", 0)),
                reason=reason or str(result.get("reason", "")),
                job_id=job.id if job is not None else "",
            )
        )

    for integration in integrations:
        target = rt.config.system(integration.target)
        assert target is not None  # the config validator guarantees it
        func = flow_for(flow or "", target.kind)
        if func is None:
            summary["integrations"][integration.id] = f"no {flow} flow to {target.kind} yet"
            note(integration.id, "ignored", reason=f"no {flow} flow to {target.kind} yet")
            continue
        try:
            with resource_lock(
                rt.connection, integration.id, envelope.resource, envelope.resource_id or "-",
                hold=3 * rt.config.gateway.worker_heartbeat_seconds,
            ):  # fmt: skip
                result = func(integration, envelope, rt)
        except PermanentError as error:
            fail_permanently(error)
            note(integration.id, "failed", reason=str(error))
            log.warning("event %s %s: permanent failure: %s", envelope.topic, envelope.resource_id, error)
            raise
        except TransientError as error:
            note_transient(error)
            final = job is not None and not job.retries_left  # RQ retries only while some are left
            note(integration.id, "failed" if final else "retrying", reason=str(error))
            log.info("event %s %s: will retry: %s", envelope.topic, envelope.resource_id, error)
            raise
        except Exception as error:
            note(integration.id, "error", reason=f"unexpected {type(error).__name__}; see the job's traceback")
            raise
        summary["integrations"][integration.id] = result
        note(integration.id, str(result.get("outcome", "ignored")), result)
    log.info("event %s %s from %s done", envelope.topic, envelope.resource_id or "-", envelope.endpoint)
    return summary
