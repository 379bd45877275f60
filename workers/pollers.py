"""Pollers: scheduled RQ jobs that read any `Source.changes` into the webhook pipeline.

`poll(system_id, stream)` reads one stream of one polled system from its stored cursor:

    lock   koppel:lock:poll:{system}:{scope}:{stream}     SET NX + expiry, renewed per page;
                                                          held elsewhere → {"skipped": ...}
    cursor koppel:cursor:{system}:{scope}:{stream}        none at first: the source reads from the start
    per page of source.changes(stream, cursor):
        Envelope per change → Ingestor.store()            dedupe + inbox entry (→ job), atomic
        only then: save the page's cursor                 (a numeric cursor never moves backwards)
    schedule the next poll                                (also after a failure)

`scope` is what a stream's cursor belongs to besides the system (Exact: the division). A crash
between storing a page and saving its cursor re-reads that page next time; its delivery keys are
already marked seen, so no job is queued twice.

Which streams are polled: every enabled integration whose source is a *system* (not a webhook
endpoint) polls `Source.streams_for(flow, settings)` (`Source.streams[flow]`; for orders the streams
of the integration's `order_documents`) for each of its flows, every `poll_interval_seconds` of the
system's settings. A system whose webhooks can drop deliveries (its settings' `reconcile_interval()`
is not 0: WooCommerce) is also polled when only its webhooks feed an integration (an endpoint linked
to it by `system = ...`): the reconciliation poll, every `reconcile_interval()` seconds, for the
streams of the flows those integrations take. Its events feed the same integrations as the webhooks
(`Config.integrations_from`), and a change reached both ways runs once (`Source.version`).
`poll_now` starts a poll at once (after a webhook was found disabled: deliveries were lost).

Scheduling: every (system, stream) has two deterministic job ids, slot `a` and slot `b`. A running
poll cannot schedule its successor under its own id (RQ still owns that job hash until the job
ends), so it schedules the other slot. `schedule_polls` (called when `koppel worker` starts) and the
reschedule step only schedule when neither slot is scheduled, queued or running, and they schedule
with RQ's atomic `unique=True`, so any number of workers starting together leave one pending poll.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.exceptions import LockError, WatchError
from rq import Queue, get_current_job
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus

from connectors import registry
from connectors.contract import Change, Source
from gateway import keys
from gateway.config import Config, System
from gateway.envelope import Envelope, Event
from gateway.errors import KoppelError, PermanentError, TransientError
from gateway.ingest import Accepted, Ingestor, make_queue
from workers import runtime
from workers.outage import UNREACHABLE, outage
from workers.switches import all_off

log = logging.getLogger("koppel.pollers")

POLL_FUNC = "workers.pollers.poll"
LOCK_SECONDS = 300
"""Expiry of the poll lock; renewed after every page, so it only matters when a worker dies mid-poll."""
JOB_TIMEOUT = 1800
SLOTS = ("a", "b")
POLL_JOB_PREFIX = "koppel-poll-"
"""Every poll job id starts so (`poll_job_ids`): how the queue's own jobs are told from event jobs."""

_ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


# -- config ------------------------------------------------------------------------------------------


def polled_system(config: Config, system_id: str) -> System:
    system = config.system(system_id)
    if system is None:
        raise PermanentError(f"no system {system_id!r} in the config")
    return system


def _polls_directly(config: Config, system: System) -> bool:
    return any(i.enabled and i.source == system.id for i in config.integrations)


def poll_interval(config: Config, system: System) -> int:
    """`poll_interval_seconds` for a system an integration polls, else its reconciliation interval."""
    settings = registry.get(system.kind).settings.of(system)
    if _polls_directly(config, system):
        return settings.poll_interval_seconds
    return settings.reconcile_interval() or settings.poll_interval_seconds


def _reconciled(config: Config, system: System) -> bool:
    return registry.get(system.kind).settings.of(system).reconcile_interval() > 0


def polled_streams(config: Config) -> dict[str, list[str]]:
    """{system id: streams} for every enabled integration whose source is a polled system, or an endpoint
    linked to a system that reconciles."""
    found: dict[str, list[str]] = {}
    for integration in config.integrations:
        if not integration.enabled:
            continue
        system = config.system(integration.source)
        if system is None:
            system = config.api_system(integration.source)
            if system is None or not _reconciled(config, system):
                continue
        source = registry.get(system.kind).source
        if source is None:
            continue
        streams = found.setdefault(system.id, [])
        for flow in integration.flows:
            streams += [stream for stream in source.streams_for(flow, integration.settings) if stream not in streams]
    return {system_id: streams for system_id, streams in found.items() if streams}


# -- cursor ------------------------------------------------------------------------------------------


def cursor_key(system_id: str, scope: str, stream: str) -> str:
    return keys.cursor(system_id, f"{scope}:{stream}" if scope else stream)


def read_cursor(connection: redis.Redis, key: str) -> str | None:
    raw = connection.get(key)
    return keys.text(raw) if raw is not None else None


def save_cursor(connection: redis.Redis, key: str, cursor: str) -> str:
    """Store `cursor` unless a later numeric one is stored already; returns the stored value."""
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                stored = keys.text(raw) if raw is not None else None
                if stored is not None and stored.isdigit() and cursor.isdigit() and int(stored) >= int(cursor):
                    pipe.unwatch()
                    return stored
                pipe.multi()
                pipe.set(key, cursor)
                pipe.execute()
                return cursor
            except WatchError:
                continue


@dataclass(frozen=True)
class StreamPolls:
    """What `koppel:polled:{system}` holds of one stream (epoch seconds; 0 = never): `read` when a poll last
    read it in full (of `scope`; the web console's "last poll"), `ok` its last success (a full read, or
    skipped because every integration it feeds is switched off), `failed` its last failure and `error`
    why, `watched` when the notifier's stall check first looked at it."""

    read: float = 0.0
    scope: str = ""
    ok: float = 0.0
    failed: float = 0.0
    error: str = ""
    watched: float = 0.0


def _field(stream: str, name: str) -> str:
    return f"{stream}:{name}"


def note_polled(connection: redis.Redis, system_id: str, scope: str, stream: str, at: float | None = None) -> None:
    """The stream was read in full (of `scope`): its last read and its last success."""
    now = repr(at or time.time())
    fields = {_field(stream, "read"): now, _field(stream, "scope"): scope, _field(stream, "ok"): now}
    connection.hset(keys.polled(system_id), mapping=fields)  # type: ignore[arg-type]  # redis-py#2917


def note_poll_outcome(connection: redis.Redis, system_id: str, stream: str, *, error: str | None,
                      at: float | None = None) -> None:  # fmt: skip
    """A poll's success without a read (nothing to read for) or its failure, for the notifier's stall
    check (workers/notifier.py); never raises: the poll's own outcome matters more."""
    now = repr(at or time.time())
    fields = {_field(stream, "ok"): now} if error is None else {
        _field(stream, "failed"): now, _field(stream, "error"): error[:300]}  # fmt: skip
    try:
        connection.hset(keys.polled(system_id), mapping=fields)  # type: ignore[arg-type]  # as above
    except redis.RedisError as exc:
        log.warning("poll %s %s: outcome not recorded (Redis: %s)", system_id, stream, type(exc).__name__)


def stream_polls(connection: redis.Redis, system_id: str, *, watch: list[str] | None = None,
                 now: float | None = None) -> dict[str, StreamPolls]:  # fmt: skip
    """{stream: StreamPolls} of a polled system. `watch`: streams whose watching starts `now` unless it
    started before (the notifier's stall check counts from then)."""
    if watch:
        with connection.pipeline(transaction=False) as pipe:
            for stream in watch:
                pipe.hsetnx(keys.polled(system_id), _field(stream, "watched"), repr(now or time.time()))
            pipe.execute()
    raw: dict[str, dict[str, str]] = {}
    for name, value in connection.hgetall(keys.polled(system_id)).items():
        stream, _, field_name = keys.text(name).rpartition(":")
        if stream:
            raw.setdefault(stream, {})[field_name] = keys.text(value)
    return {stream: StreamPolls(_time(f, "read"), f.get("scope", ""), _time(f, "ok"), _time(f, "failed"),
                                f.get("error", ""), _time(f, "watched"))
            for stream, f in raw.items()}  # fmt: skip


def _time(fields: dict[str, str], name: str) -> float:
    try:
        return float(fields.get(name) or 0)
    except ValueError:
        return 0.0


def last_polls(connection: redis.Redis, system_id: str) -> dict[str, float]:
    """{"[scope:]stream": when it was last read in full (epoch s)} of a polled system."""
    return {(f"{p.scope}:{stream}" if p.scope else stream): p.read
            for stream, p in stream_polls(connection, system_id).items() if p.read}  # fmt: skip


# -- the job -----------------------------------------------------------------------------------------


def envelope_of(change: Change, *, source: Source, system_id: str, received_at: datetime) -> Envelope:
    event = Event(
        topic=f"{change.resource}.sync",
        resource=change.resource,
        resource_id=change.resource_id,
        delivery_key=change.delivery_key,
        payload=change.record,
    )
    return Envelope.wrap(event, source=source.kind, endpoint=system_id, received_at=received_at)


def _ingestor(rt: runtime.Runtime) -> Ingestor:
    """The gateway's ingestor settings: same dedupe window and inbox as webhooks (the pumps add TTLs and retries)."""
    settings = rt.config.gateway
    return Ingestor(
        rt.connection, queue_name=settings.queue, dedupe_ttl=settings.dedupe_ttl_seconds,
        wait_replicas=settings.wait_replicas, wait_timeout_ms=settings.wait_timeout_ms,
    )  # fmt: skip


@contextlib.contextmanager
def _poll_lock(connection: redis.Redis, name: str) -> Iterator[redis.lock.Lock | None]:
    """The poll lock, or None when another poll holds it."""
    lock = connection.lock(name, timeout=LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        yield None
        return
    try:
        yield lock
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def _read(rt: runtime.Runtime, source: Source, system_id: str, stream: str) -> dict[str, Any]:
    scope = source.poll_scope()
    summary: dict[str, Any] = {"system": system_id, "stream": stream}
    if scope:
        summary["scope"] = scope
    with _poll_lock(rt.connection, keys.lock("poll", system_id, scope, stream)) as lock:
        if lock is None:
            return summary | {"skipped": "another poll is running"}
        key = cursor_key(system_id, scope, stream)
        cursor = read_cursor(rt.connection, key)
        ingestor = _ingestor(rt)
        pages = records = queued = 0
        for changes, page_cursor in source.changes(stream, cursor):
            now = datetime.now(UTC)
            envelopes = [envelope_of(c, source=source, system_id=system_id, received_at=now) for c in changes]
            accepted: list[Accepted] = ingestor.store(envelopes)
            cursor = save_cursor(rt.connection, key, page_cursor)  # only now: a crash before it re-reads the page
            pages, records = pages + 1, records + len(changes)
            queued += sum(not a.duplicate for a in accepted)
            try:
                lock.reacquire()
            except LockError as exc:
                raise TransientError(f"poll of {system_id} {stream}: lost the poll lock; stopping") from exc
        note_polled(rt.connection, system_id, scope, stream)
        log.info("poll %s %s %s: %d records, %d queued", system_id, scope, stream, records, queued)
        counts = {"pages": pages, "records": records, "queued": queued, "duplicates": records - queued}
        return summary | counts | {"cursor": cursor}


def poll(system_id: str, stream: str) -> dict[str, Any]:
    """RQ job: enqueue a `process_event` job per record changed since the stored cursor, then schedule the next poll.

    Returns a summary (counts and cursor, no record data), or `{"skipped": ...}` when another poll of the
    same system, scope and stream is running. Config errors raise PermanentError and stop the chain
    (`schedule_polls` restarts it when a worker starts); API errors fail this run, the next still comes. A
    stream the config no longer polls (changed by a live reload) ends its chain quietly.
    """
    rt = runtime.current()
    if stream not in polled_streams(rt.config).get(system_id, []):  # a live reload took it out of the config
        log.info("poll %s %s: the config no longer polls it; its chain ends", system_id, stream)
        return {"ended": "the config no longer polls this stream"}
    system = polled_system(rt.config, system_id)
    interval = poll_interval(rt.config, system)
    job = get_current_job()
    try:
        if all_off(rt.connection, rt.config, system_id):
            summary: dict[str, Any] = {"skipped": f"every integration {system_id} feeds is switched off"}
        else:
            summary = _read(rt, rt.source(system_id), system_id, stream)
    except Exception as exc:  # the stall check (workers/notifier.py) names the last failure
        error = str(exc) if isinstance(exc, KoppelError) else f"unexpected {type(exc).__name__}"
        note_poll_outcome(rt.connection, system_id, stream, error=error)
        raise
    else:
        if "every integration" in str(summary.get("skipped", "")):  # a full read noted its own success
            note_poll_outcome(rt.connection, system_id, stream, error=None)
    finally:
        try:
            queue = make_queue(rt.connection, rt.config.gateway.queue)
            next_id = _schedule(queue, system, stream, interval, running=job.id if job else None)
        except UNREACHABLE as exc:  # Redis away: the worker schedules the chain again when it is back
            outage.failed(exc, f"scheduling the next poll of {system_id} {stream}")
            next_id = None
        except Exception:  # never hide the poll's own outcome behind a scheduling failure
            log.exception("poll %s %s: scheduling the next poll failed", system_id, stream)
            next_id = None
    return summary | {"next_poll": next_id}


# -- scheduling --------------------------------------------------------------------------------------


def poll_job_ids(system_id: str, stream: str) -> list[str]:
    """The two deterministic job ids of a (system, stream) poll chain."""
    return [f"{POLL_JOB_PREFIX}{system_id}-{stream}-{slot}" for slot in SLOTS]


def _schedule(queue: Queue, system: System, stream: str, interval: int, *, running: str | None) -> str | None:
    """Schedule the next poll in `interval` s unless one is pending or running; its job id, or None."""
    return schedule_chain(
        queue, POLL_FUNC, (system.id, stream), poll_job_ids(system.id, stream), interval, running=running,
        timeout=JOB_TIMEOUT, description=f"poll {system.id} {stream}",
        meta={"poller": system.kind, "system": system.id, "stream": stream},
    )  # fmt: skip


def schedule_chain(
    queue: Queue, func: str, args: tuple[str, ...], job_ids: list[str], interval: int, *, running: str | None,
    timeout: int, description: str, meta: dict[str, str],
) -> str | None:  # fmt: skip
    """Schedule `func(*args)` in `interval` s under one of `job_ids` (its two slots) unless one of them is
    scheduled, queued or running (other than `running`, the caller); the job id, or None."""
    free: list[str] = []
    for job_id in job_ids:
        if job_id == running:
            continue  # the caller itself: it is ending
        job = queue.fetch_job(job_id)
        status = job.get_status(refresh=False) if job is not None else None
        if job is not None and status is not None and status not in _ENDED:
            return None  # scheduled, queued or running already
        free.append(job_id)
        if job is not None:
            job.delete()  # a finished or failed earlier run under this id
    job_id = free[0]
    try:
        queue.enqueue_in(
            timedelta(seconds=interval),
            func,
            args=args,
            job_id=job_id,
            unique=True,
            job_timeout=timeout,
            result_ttl=max(3600, 3 * interval),
            failure_ttl=7 * 24 * 3600,
            description=description,
            meta=meta,
        )
    except DuplicateJobError:
        return None  # another process scheduled it a moment ago
    return job_id


def poll_now(connection: redis.Redis, config: Config, system_id: str) -> list[str]:
    """Poll every stream of the system at once (a third job id per stream, beside the chain's two slots);
    the job ids queued. A stream whose immediate poll is still waiting or running is left to it."""
    queue = make_queue(connection, config.gateway.queue)
    system = polled_system(config, system_id)
    queued: list[str] = []
    for stream in polled_streams(config).get(system_id, []):
        job_id = f"{POLL_JOB_PREFIX}{system_id}-{stream}-now"
        job = queue.fetch_job(job_id)
        if job is not None and job.get_status(refresh=False) not in _ENDED:
            continue
        if job is not None:
            job.delete()
        try:
            queue.enqueue(
                POLL_FUNC, args=(system_id, stream), job_id=job_id, unique=True, job_timeout=JOB_TIMEOUT,
                result_ttl=3600, failure_ttl=7 * 24 * 3600, description=f"poll {system_id} {stream} now",
                meta={"poller": system.kind, "system": system_id, "stream": stream},
            )  # fmt: skip
        except DuplicateJobError:
            continue
        queued.append(job_id)
    return queued


def schedule_polls(connection: redis.Redis, config: Config) -> list[str]:
    """Schedule the next poll of every polled (system, stream) that has none pending; the new job ids.

    Safe to call from every worker at start-up: repeated or concurrent calls leave one pending poll each.
    """
    queue = make_queue(connection, config.gateway.queue)
    scheduled: list[str] = []
    for system_id, streams in polled_streams(config).items():
        system = polled_system(config, system_id)
        interval = poll_interval(config, system)
        for stream in streams:
            job_id = _schedule(queue, system, stream, interval, running=None)
            if job_id is not None:
                scheduled.append(job_id)
    return scheduled
