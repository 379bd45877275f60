"""RQ job functions. The receiver and the pollers enqueue `process_event(envelope)`."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from redis.client import Pipeline

from connectors import registry
from connectors.contract import FlowResult, Gone, Target
from gateway import keys, notify, snapshots
from gateway.activity import Activity, ActivityLog
from gateway.config import Config, Integration
from gateway.envelope import Envelope
from gateway.errors import KoppelError, PermanentError, TransientError
from gateway.ingest import Ingestor
from workers import runtime
from workers.flows import (
    Work,
    batch_function,
    flow_function,
    note_seen,
    run_unseen,
    seen_before,
    seen_read_key,
)
from workers.policy import current_job, direct_run, fail_permanently, note_transient, resource_lock, resource_locks
from workers.pollers import envelope_of
from workers.switches import switch_off, switch_read

log = logging.getLogger("koppel.worker")

NOUNS = {"orders": "order", "customers": "customer", "products": "product", "stock": "stock level"}
"""What a flow's records are called in a failure notification."""


def flow_of(envelope: Envelope) -> str | None:
    """The flow an event feeds, as its source's connector says (None: no flow takes it)."""
    try:
        source = registry.get(envelope.source).source
    except KeyError:
        return None
    return source.flow_of(envelope.resource) if source is not None else None


def _collection(rt: runtime.Runtime, envelope: Envelope) -> dict[str, Any] | None:
    """A notification of many changes: every changed record queued as its own event (the source's
    delivery keys and versions, so one also reached by a poll runs once); None for any other event."""
    source = rt.source(envelope.endpoint)
    pages = source.collection(envelope)
    if pages is None:
        return None
    settings = rt.config.gateway
    ingestor = Ingestor(
        rt.connection, queue_name=settings.queue, dedupe_ttl=settings.dedupe_ttl_seconds,
        wait_replicas=settings.wait_replicas, wait_timeout_ms=settings.wait_timeout_ms,
    )  # fmt: skip
    records = queued = 0
    for changes in pages:
        now = datetime.now(UTC)
        accepted = ingestor.store([envelope_of(c, source=source, system_id=envelope.endpoint, received_at=now)
                                   for c in changes])  # fmt: skip
        records += len(changes)
        queued += sum(not a.duplicate for a in accepted)
    log.info("%s %s: a collection notification; %d changed records read, %d queued", envelope.endpoint,
             envelope.topic, records, queued)  # fmt: skip
    return {"endpoint": envelope.endpoint, "topic": envelope.topic, "resource_id": None, "collection": True,
            "records": records, "queued": queued}  # fmt: skip


def run_event(
    rt: runtime.Runtime, integration: Integration, envelope: Envelope, finish: Pipeline | None = None,
    seen_read: tuple[str, Any] | None = None,
) -> FlowResult:  # fmt: skip
    """One event's flow for one integration (what `process_event` runs under the resource lock); `finish`:
    a pipeline sent with the lock's release, where the record's seen version is written (else at once);
    `seen_read`: (key, reply) of the record's seen version read under the lock already (`seen_before`)."""
    flow = flow_of(envelope)
    if flow is None:
        raise PermanentError(f"no flow takes {envelope.source} {envelope.resource} events")
    work = Work(integration, envelope, rt.source(integration.source), rt.target(integration.target), rt, finish)
    before = _calls(work.target)
    try:
        return _run(work, flow, finish, seen_read)
    except KoppelError as error:  # the calls it made before failing go on its activity line (`calls_of`)
        after = _calls(work.target) if before is not None else None
        error.calls = after - before if after is not None and before is not None else None
        raise


def _calls(target: Target) -> int | None:
    """The target's call count; None when its client cannot be built (a system the config leaves incomplete: the
    flow meets that error itself, if it turns to the target at all)."""
    try:
        return target.calls
    except KoppelError:
        return None


def calls_of(error: BaseException) -> int:
    """The target calls made for a record before `error` ended its run (`KoppelError.calls`; 0 when uncounted)."""
    return (error.calls or 0) if isinstance(error, KoppelError) else 0


def _run(work: Work, flow: str, finish: Pipeline | None = None, seen_read: tuple[str, Any] | None = None) -> FlowResult:
    """The flow, unless this version of the record was processed already (under the resource lock), or
    the record is gone from the source (skipped, naming it)."""
    try:
        seen, answer = seen_before(work, flow, seen_read)
        if answer is not None:
            return answer
        result = flow_function(flow)(work)
    except Gone as gone:
        return _gone(work, gone)
    note_seen(work, seen, result, finish)
    return result


def _gone(work: Work, gone: Gone) -> FlowResult:
    log.info("event %s %s: %s; skipped", work.envelope.topic, work.envelope.resource_id, gone)
    return FlowResult("skipped", calls=0, reason=str(gone))


def _lifecycle(rt: runtime.Runtime, envelope: Envelope) -> dict[str, Any] | None:
    """A notification that the system cut Koppel off (`Source.lifecycle`): every integration the endpoint
    feeds is switched off and the operator told (workers/switches.py); None for any other event."""
    try:
        reason = rt.source(envelope.endpoint).lifecycle(envelope)
    except (KeyError, PermanentError):
        return None
    if reason is None:
        return None
    job = current_job()
    off = [i.id for i in rt.config.integrations_from(envelope.endpoint)]
    for integration_id in off:
        switch_off(rt.connection, integration_id, reason, topic=envelope.topic, job_id=job.id if job else "")
    return {"endpoint": envelope.endpoint, "topic": envelope.topic, "resource_id": envelope.resource_id,
            "switched_off": off, "reason": reason}  # fmt: skip


class _Kept:
    """The job's payload snapshot, stored when the work ends, however it ends (never failing the job), unless
    `queue` put it on the pipeline that ends the work, or found nothing worth keeping."""

    def __init__(self, rt: runtime.Runtime, recorder: snapshots.Recorder) -> None:
        self.store = snapshots.SnapshotStore(rt.connection, rt.snapshot_ttl)
        self.recorder = recorder
        self.done = not recorder.job_id

    def queue(self, pipe: Pipeline, result: FlowResult) -> None:
        """On `pipe`, unless the event was answered without a call or a mapping (processed already: the
        snapshot would only repeat the payload the job keeps)."""
        rec = self.recorder
        self.done = True
        if result.outcome == "skipped" and not result.calls and not rec.mapped and not rec.requests:
            return
        self.save(pipe)

    def save(self, pipe: Pipeline | None = None) -> None:
        try:
            self.store.save(self.recorder, pipe)
        except Exception as exc:  # Redis unreachable, a payload JSON cannot hold: the job's outcome stands
            log.warning("job %s: its payload snapshot could not be stored (%s)", self.recorder.job_id,
                        type(exc).__name__)  # fmt: skip


@contextmanager
def _kept(rt: runtime.Runtime, recorder: snapshots.Recorder) -> Iterator[_Kept]:
    kept = _Kept(rt, recorder)
    try:
        yield kept
    finally:
        if not kept.done:
            kept.save()


def notify_failure(rt: runtime.Runtime, integration: Integration, envelope: Envelope, flow: str | None,
                   reason: str) -> None:  # fmt: skip
    """Record a permanent failure for the integration's notifications (gateway/notify.py): grouped by its
    reason, with the record's own id taken out of it so that one cause failing many records is one group."""
    if integration.notify is None:
        return
    noun = NOUNS.get(flow or "", envelope.resource or "record")
    ident = envelope.resource_id or ""
    if len(ident) >= 2:
        reason = re.sub(rf"(?<![\w-]){re.escape(ident)}(?![\w-])", "…", reason)
    fix = (f"fix the cause, then replay the failed jobs: `koppel replay --integration {integration.id}` "
           f"(or the console page /console/integrations/{integration.id}/failed)")  # fmt: skip
    notify.record(rt.connection, "failure", reason, integration=integration.id, item=f"{noun} {ident or '(no id)'}",
                  noun=noun, fix=fix)  # fmt: skip


def _lines(integration_id: str, flow: str, resource_id: str, events: list[dict[str, Any]], ran_in: str,
           outcome: str, result: FlowResult | None = None, reason: str = "",
           calls: int = 0) -> list[Activity]:  # fmt: skip
    """The activity lines of a record's events (`events`: id, topic, received_at each, oldest first) that one
    run of job `ran_in` handled: the first event's with the outcome; once it is final, each other's as
    skipped, merged into that job. `calls`: without a result, the target calls made before it failed."""
    done_at = time.time()
    first = events[0]
    lines = [Activity(
        integration=integration_id, flow=flow, topic=first["topic"], resource_id=resource_id, outcome=outcome,
        received_at=datetime.fromisoformat(first["received_at"]).timestamp(), done_at=done_at,
        number=result.number if result else "", target_id=result.target_id if result else "",
        calls=(result.calls or 0) if result else calls, reason=reason or (result.reason if result else ""),
        job_id=first["id"], level=result.level if result else "",
    )]  # fmt: skip
    if outcome != "retrying":
        why = f"merged into job {ran_in} ({first['topic']}), which ran it with the latest payload: {outcome}"
        lines += [Activity(integration=integration_id, flow=flow, topic=event["topic"], resource_id=resource_id,
                           outcome="skipped", received_at=datetime.fromisoformat(event["received_at"]).timestamp(),
                           done_at=done_at, number=result.number if result else "", reason=why, job_id=event["id"])
                  for event in events[1:]]  # fmt: skip
    return lines


def process_event(envelope_data: dict[str, Any], group: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the event through its flow for every integration its endpoint (or polled system) feeds.

    Work on one resource of one integration is serialised (a Redis lock), so two events for the
    same order never race. Every outcome, failures included, goes to the integration's activity
    log (gateway/activity.py). Returns a summary kept as the job's result: ids and outcomes, no payload.

    `group`: the events for this record the inbox pump merged into this job (workers/inbox.py), oldest
    first, each `{"id", "topic", "received_at"}`; the job has the first one's id and `envelope_data` is the
    latest one's. The record is processed once; the job's activity line is the first event's, and every
    other gets its own line, "skipped" as merged into this job, once the outcome is final.
    """
    try:
        envelope = Envelope.model_validate(envelope_data)
    except ValueError:
        error = PermanentError("the job's argument is not a Koppel event envelope")
        fail_permanently(error)
        raise error from None
    rt = runtime.current()
    flow = flow_of(envelope)
    if flow is None:
        cut_off = _lifecycle(rt, envelope)
        if cut_off is not None:
            return cut_off
    integrations = [i for i in rt.config.integrations_from(envelope.endpoint) if flow in i.flows]
    if integrations and envelope.resource_id is None:
        fanned = _collection(rt, envelope)
        if fanned is not None:
            return fanned
    summary: dict[str, Any] = {
        "endpoint": envelope.endpoint,
        "topic": envelope.topic,
        "resource_id": envelope.resource_id,
        "flow": flow,
        "integrations": {},
    }
    if not integrations:
        summary["outcome"] = "no integration takes this event"
    activity = ActivityLog(rt.connection, rt.config.retention.activity)
    job = current_job()
    job_id = job.id if job is not None else ""
    first = group[0] if group else {"topic": envelope.topic, "received_at": envelope.received_at.isoformat()}
    merged = group[1:] if group else []
    if merged:
        summary["merged"] = [member["id"] for member in merged]

    def note(integration_id: str, outcome: str, result: FlowResult | None = None, reason: str = "",
             pipe: Pipeline | None = None, calls: int = 0) -> None:  # fmt: skip
        events = [{**first, "id": job_id}, *merged]
        activity.record_many(_lines(integration_id, flow or "", envelope.resource_id or "", events, job_id,
                                    outcome, result, reason, calls), pipe)  # fmt: skip

    direct = direct_run()  # the inbox pump's own attempt: its end goes with the last integration's lock release
    for index, integration in enumerate(integrations):
        assert flow is not None
        # Koppel's own round trips: the switch and the record's seen version read with the lock's first try; the
        # seen version, the snapshot and the activity lines written with its release (`resource_lock`'s `also`
        # and `finish`). The seen version's reply counts only when that try took the lock (`Held.under_lock`).
        seen_key = seen_read_key(integration.id, flow, envelope.resource_id)
        try:
            with (
                snapshots.recording(integration.id, job_id, flow=flow, received=envelope.payload) as rec,
                _kept(rt, rec) as kept,
                resource_lock(
                    rt.connection, integration.id, envelope.resource, envelope.resource_id or "-",
                    hold=3 * rt.config.gateway.worker_heartbeat_seconds, also=_reads(integration.id, seen_key),
                ) as held,
            ):  # fmt: skip
                off = keys.text(held.also[0]) if held.also and held.also[0] is not None else None
                if off is not None:
                    kept.done = True  # nothing ran
                    summary["integrations"][integration.id] = {"outcome": "skipped", "reason": f"switched off: {off}"}
                    note(integration.id, "skipped", reason=f"switched off: {off}")
                    continue
                held.finish = finish = rt.connection.pipeline(transaction=False)
                ahead = (seen_key, held.also[1]) if seen_key is not None and held.under_lock else None
                result = run_event(rt, integration, envelope, finish, ahead)
                kept.queue(finish, result)
                note(integration.id, result.outcome, result, pipe=finish)
                summary["integrations"][integration.id] = result.as_dict()
                if direct is not None and index == len(integrations) - 1:
                    direct.finish_in(finish, summary)
        except PermanentError as error:
            fail_permanently(error)
            note(integration.id, "failed", reason=str(error), calls=calls_of(error))
            notify_failure(rt, integration, envelope, flow, str(error))
            log.warning("event %s %s: permanent failure: %s", envelope.topic, envelope.resource_id, error)
            raise
        except TransientError as error:
            note_transient(error)
            final = job is not None and not job.retries_left  # RQ retries only while some are left
            note(integration.id, "failed" if final else "retrying", reason=str(error), calls=calls_of(error))
            if final:
                notify_failure(rt, integration, envelope, flow, f"{error} (retries exhausted)")
            log.info("event %s %s: will retry: %s", envelope.topic, envelope.resource_id, error)
            raise
        except Exception as error:
            note(integration.id, "error", reason=f"unexpected {type(error).__name__}; see the job's traceback")
            if job is not None and not job.retries_left:
                notify_failure(rt, integration, envelope, flow,
                               f"unexpected {type(error).__name__}; see the failed job's traceback")  # fmt: skip
            raise
    log.info("event %s %s from %s done", envelope.topic, envelope.resource_id or "-", envelope.endpoint)
    return summary


def _reads(integration_id: str, seen_key: str | None) -> Callable[[Pipeline], None]:
    """The reads sent with a record's lock's first try: the integration's switch, then the seen version's key."""
    switch = switch_read(integration_id)

    def read(pipe: Pipeline) -> None:
        switch(pipe)
        if seen_key is not None:
            pipe.get(seen_key)

    return read


def batchable_for(config: Config) -> Callable[[dict[str, Any]], bool]:
    """For the inbox pump (workers/inbox.py): whether an event (its envelope as queued) may go into a batch job
    with other records' events of its endpoint and resource: every integration its flow feeds writes into a
    target with a batch write for that flow (`workers.flows.batch_function`). Answered once per kind of event."""
    known: dict[tuple[str, str, str], bool] = {}

    def batchable(envelope: dict[str, Any]) -> bool:
        key = (envelope["endpoint"], envelope["source"], envelope["resource"])
        if key not in known:
            known[key] = _batchable(config, *key)
        return known[key]

    return batchable


def direct_for(rt: runtime.Runtime) -> Callable[[dict[str, Any]], bool]:
    """For the inbox pump (workers/inbox.py): whether a record's events (its latest envelope as queued) are run by
    the pump itself, without an RQ job: while the running config's `[gateway] direct_events` is on, an event of
    one record (a resource id) that a flow takes. A collection notification (no record), a lifecycle notification
    (no flow) and the records of a batch job stay RQ jobs."""
    flows: dict[tuple[str, str], bool] = {}

    def direct(envelope: dict[str, Any]) -> bool:
        if not rt.config.gateway.direct_events or not envelope.get("resource_id"):
            return False
        key = (envelope["source"], envelope["resource"])
        if key not in flows:
            try:
                source = registry.get(key[0]).source
            except KeyError:
                source = None
            flows[key] = source is not None and source.flow_of(key[1]) is not None
        return flows[key]

    return direct


def _batchable(config: Config, endpoint: str, source_kind: str, resource: str) -> bool:
    try:
        source = registry.get(source_kind).source
    except KeyError:
        return False
    flow = source.flow_of(resource) if source is not None else None
    integrations = [i for i in config.integrations_from(endpoint) if flow in i.flows]
    if flow is None or not integrations:
        return False
    systems = [config.system(i.target) for i in integrations]
    return all(system is not None and batch_function(flow, system.kind) is not None for system in systems)


def process_batch(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Several records' events of one endpoint and resource, written with the target's batch write
    (`workers.flows.batch_function`, called once per integration) under every record's lock (taken in
    sorted order). `members`: per record its first event's id, its latest envelope and its events
    (`workers.inbox.InboxPump._batch_data`). A record already processed is answered by its seen version; a
    record the batch could not write (an Exception in its place) is queued again as its own job under its
    own id (`InboxPump.enqueue_alone`): its retries, failure and replay are then its own.
    """
    from workers.inbox import pump_for

    try:
        envelopes = [Envelope.model_validate(member["envelope"]) for member in members]
    except (ValueError, KeyError, TypeError):
        error = PermanentError("the job's argument is not a list of Koppel event envelopes")
        fail_permanently(error)
        raise error from None
    rt = runtime.current()
    first = envelopes[0]
    flow = flow_of(first)
    job = current_job()
    job_id = job.id if job is not None else members[0]["id"]
    activity = ActivityLog(rt.connection, rt.config.retention.activity)
    integrations = [i for i in rt.config.integrations_from(first.endpoint) if flow is not None and flow in i.flows]
    summary: dict[str, Any] = {"endpoint": first.endpoint, "resource": first.resource, "flow": flow,
                               "records": [e.resource_id for e in envelopes], "integrations": {}}  # fmt: skip
    alone: set[int] = set()
    hold = 3 * rt.config.gateway.worker_heartbeat_seconds
    order = sorted(range(len(members)), key=lambda index: envelopes[index].resource_id or "")
    for integration in integrations:
        assert flow is not None
        outcomes: dict[str, Any] = {}
        resources = [(integration.id, envelopes[index].resource, envelopes[index].resource_id or "-")
                     for index in order]  # fmt: skip
        with resource_locks(rt.connection, resources, hold=hold, also=switch_read(integration.id)) as held:
            off = keys.text(held.also[0]) if held.also and held.also[0] is not None else None
            if off is not None:
                for member, envelope in zip(members, envelopes, strict=True):
                    activity.record_many(_lines(integration.id, flow, envelope.resource_id or "", member["group"],
                                                job_id, "skipped", reason=f"switched off: {off}"))  # fmt: skip
                summary["integrations"][integration.id] = {"outcome": "skipped", "reason": f"switched off: {off}"}
                continue
            results = _run_batch(rt, integration, envelopes, flow)
            held.finish = finish = rt.connection.pipeline(transaction=False)  # sent with the locks' release
            for index, (member, envelope, (work, seen, result)) in enumerate(zip(members, envelopes, results,
                                                                                  strict=True)):
                if isinstance(result, Exception):
                    alone.add(index)
                    outcomes[envelope.resource_id or ""] = {"outcome": "run alone", "reason": _why(result)}
                    continue
                note_seen(work, seen, result, finish)
                activity.record_many(_lines(integration.id, flow, envelope.resource_id or "", member["group"],
                                            job_id, result.outcome, result), finish)  # fmt: skip
                outcomes[envelope.resource_id or ""] = result.as_dict()
        summary["integrations"][integration.id] = outcomes
    if alone:
        pump = pump_for(rt.connection, rt.config.gateway, rt.config.retention)
        for index in sorted(alone):
            queued = pump.enqueue_alone(members[index])
            log.info("batch job %s: %s %s queued again as its own job %s%s", job_id, first.resource,
                     envelopes[index].resource_id, members[index]["id"],
                     "" if queued else " (queued already)")  # fmt: skip
        summary["alone"] = [members[index]["id"] for index in sorted(alone)]
    log.info("batch of %d %s events from %s done (%d to run alone)", len(members), first.resource, first.endpoint,
             len(alone))  # fmt: skip
    return summary


def _why(error: Exception) -> str:
    return str(error) if isinstance(error, PermanentError | TransientError) else f"unexpected {type(error).__name__}"


def _run_batch(
    rt: runtime.Runtime, integration: Integration, envelopes: list[Envelope], flow: str
) -> list[tuple[Work, tuple[str, str] | None, FlowResult | Exception]]:
    """Per record (in input order): its work, where its seen version goes, and its result (`run_unseen`): a
    record gone from the source is skipped; an Exception marks a record to run alone."""
    works = [Work(integration, e, rt.source(integration.source), rt.target(integration.target), rt) for e in envelopes]
    # seen versions read here and noted with the locks' release: the batch write without its own checks
    write = batch_function(flow, works[0].target.kind, seen=False)  # None: another integration's target batches
    return [(work, seen, _gone(work, result) if isinstance(result, Gone) else result)
            for work, (seen, result) in zip(works, run_unseen(flow, works, write), strict=True)]  # fmt: skip
