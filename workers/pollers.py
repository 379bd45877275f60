"""Pollers: scheduled RQ jobs that read Exact Online's Sync API into the webhook pipeline.

`poll_exact(system_id, entity)` reads one sync stream of one division from its stored cursor:

    lock   koppel:lock:poll:exactonline:{system}:{division}:{entity}     SET NX + expiry, renewed per page;
                                                                         held elsewhere → {"skipped": ...}
    cursor koppel:cursor:exactonline:{system}:{division}:{entity}        default 0
    per page of read_since(cursor):
        Envelope per record → Ingestor.store()                           dedupe + inbox entry (→ job), atomic
        only then: save the page's cursor                                (never moves backwards)
    schedule the next poll                                               (also after a failure)

A crash between storing a page and saving its cursor re-reads that page next time; its delivery
keys (`sync:{division}:{entity}:{ID}:{Timestamp}`) are already marked seen, so no job is queued twice.

Scheduling: every (system, entity) has two deterministic job ids, slot `a` and slot `b`. A running
poll cannot schedule its successor under its own id (RQ still owns that job hash until the job
ends), so it schedules the other slot. `schedule_polls` (called when `koppel worker` starts) and the
reschedule step only schedule when neither slot is scheduled, queued or running, and they schedule
with RQ's atomic `unique=True`, so any number of workers starting together leave one pending poll.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.exceptions import LockError, WatchError
from rq import Queue, get_current_job
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus

from connectors.exactonline.auth import OAuthApp
from connectors.exactonline.client import ExactClient
from connectors.exactonline.odata import Record
from connectors.exactonline.ratelimit import Limits
from connectors.exactonline.sync import (
    SyncAccounts,
    SyncItems,
    SyncReader,
    SyncSalesOrderHeaders,
    SyncStockPositions,
    SyncStream,
)
from gateway.config import Config, System
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError, TransientError
from gateway.ingest import Accepted, Ingestor, make_queue
from workers import runtime

log = logging.getLogger("koppel.pollers")

SOURCE = "exactonline"
POLL_FUNC = "workers.pollers.poll_exact"
DEFAULT_BASE_URL = "https://start.exactonline.nl"
DEFAULT_INTERVAL = 60
LOCK_SECONDS = 300
"""Expiry of the poll lock; renewed after every page, so it only matters when a worker dies mid-poll."""
JOB_TIMEOUT = 1800
SLOTS = ("a", "b")
POLL_JOB_PREFIX = "koppel-poll-"
"""Every poll job id starts so (`poll_job_ids`): how the queue's own jobs are told from event jobs."""

STREAMS: dict[str, type[SyncStream]] = {
    "SalesOrderHeaders": SyncSalesOrderHeaders,
    "Accounts": SyncAccounts,
    "Items": SyncItems,
    "StockPositions": SyncStockPositions,
}
"""Entities a poller reads; the names are the envelope's `resource` (workers.jobs.flow_of knows them)."""

FLOW_ENTITIES = {"orders": "SalesOrderHeaders", "customers": "Accounts", "products": "Items", "stock": "StockPositions"}
"""Which sync stream feeds an integration's flow when its source is an Exact system."""

_ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


# -- config ------------------------------------------------------------------------------------------


def exact_system(config: Config, system_id: str) -> System:
    system = config.system(system_id)
    if system is None or system.kind != "exactonline":
        raise PermanentError(f"no Exact Online system {system_id!r} in the config")
    return system


def oauth_app(system: System) -> OAuthApp:
    """The Exact app of a system: `base_url`, `client_id` (settings or credentials), `client_secret`."""
    secret = system.credentials.get("client_secret")
    client_id = system.settings.get("client_id") or (
        system.credentials["client_id"].get_secret_value() if "client_id" in system.credentials else None
    )
    if secret is None or not client_id:
        raise PermanentError(
            f"systems.{system.id}: an Exact Online system needs settings.client_id (or credentials.client_id) "
            "and credentials.client_secret"
        )
    return OAuthApp(
        base_url=system.base_url or DEFAULT_BASE_URL,
        client_id=str(client_id),
        client_secret=secret.get_secret_value(),
        redirect_uri=str(system.settings.get("redirect_uri", "")),
    )


def poll_interval(system: System) -> int:
    value = system.settings.get("poll_interval_seconds", DEFAULT_INTERVAL)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
        raise PermanentError(f"systems.{system.id}.settings.poll_interval_seconds must be a number >= 1")
    return int(value)


def configured_division(system: System) -> int | None:
    """`settings.division`, or None: the division the authorising user last used (`current/Me`)."""
    value = system.settings.get("division")
    if value is None:
        return None
    if isinstance(value, bool) or not str(value).isdigit():
        raise PermanentError(f"systems.{system.id}.settings.division must be a division number")
    return int(value)


def exact_limits(system: System) -> Limits:
    """The division's API budget from `settings.rate_limit` (`per_minute`, `per_day`, `enabled`).

    Defaults to Exact's published 60/min and 5 000/day; `enabled = false` only for sandbox benchmarks.
    """
    given = system.settings.get("rate_limit", {})
    if not isinstance(given, dict) or set(given) - {"per_minute", "per_day", "enabled", "max_wait"}:
        raise PermanentError(f"systems.{system.id}.settings.rate_limit takes per_minute, per_day, enabled and max_wait")
    try:
        return Limits(**given)
    except TypeError as exc:  # pragma: no cover - keys are checked above
        raise PermanentError(f"systems.{system.id}.settings.rate_limit: {exc}") from None


def exact_client(rt: runtime.Runtime, system_id: str) -> ExactClient:
    """The process's client for an Exact system: the runtime's HTTP client, tokens and budget in Redis."""

    def build() -> ExactClient:
        system = exact_system(rt.config, system_id)
        return ExactClient.for_system(
            rt.http(), rt.connection, oauth_app(system), system_id,
            division=configured_division(system), limits=exact_limits(system),
        )  # fmt: skip

    return rt.cached(f"exact:{system_id}", build)


def polled_entities(config: Config) -> dict[str, list[str]]:
    """{Exact system id: sync entities} for every enabled integration whose source is an Exact system."""
    found: dict[str, list[str]] = {}
    for integration in config.integrations:
        system = config.system(integration.source)
        if not integration.enabled or system is None or system.kind != "exactonline":
            continue
        entities = found.setdefault(system.id, [])
        for flow in integration.flows:
            entity = FLOW_ENTITIES[flow]
            if entity not in entities:
                entities.append(entity)
    return found


# -- cursor ------------------------------------------------------------------------------------------


def cursor_key(system_id: str, division: int, entity: str) -> str:
    return f"koppel:cursor:{SOURCE}:{system_id}:{division}:{entity}"


def read_cursor(connection: redis.Redis, key: str) -> int:
    raw = connection.get(key)
    return int(raw) if raw is not None else 0


def save_cursor(connection: redis.Redis, key: str, cursor: int) -> int:
    """Store `cursor` unless a higher one is stored already; returns the stored value."""
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                if raw is not None and int(raw) >= cursor:
                    pipe.unwatch()
                    return int(raw)
                pipe.multi()
                pipe.set(key, str(cursor))
                pipe.execute()
                return cursor
            except WatchError:
                continue


# -- the job -----------------------------------------------------------------------------------------


def envelope_of(record: Record, *, system_id: str, division: int, entity: str, received_at: datetime) -> Envelope:
    record_id = record.get("ID") or record.get("OrderID")
    resource_id = str(record_id) if record_id is not None else None
    event = Event(
        topic=f"{entity}.sync",
        resource=entity,
        resource_id=resource_id,
        delivery_key=f"sync:{division}:{entity}:{resource_id or '-'}:{record['Timestamp']}",
        payload=record,
    )
    return Envelope.wrap(event, source=SOURCE, endpoint=system_id, received_at=received_at)


def _ingestor(rt: runtime.Runtime) -> Ingestor:
    """The gateway's ingestor settings: same dedupe window and inbox as webhooks (the pumps add TTLs and retries)."""
    s = rt.config.gateway
    return Ingestor(rt.connection, queue_name=s.queue, dedupe_ttl=s.dedupe_ttl_seconds)


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


def _read(rt: runtime.Runtime, client: ExactClient, system_id: str, entity: str) -> dict[str, Any]:
    division = client.division
    summary: dict[str, Any] = {"system": system_id, "division": division, "entity": entity}
    name = f"koppel:lock:poll:{SOURCE}:{system_id}:{division}:{entity}"
    with _poll_lock(rt.connection, name) as lock:
        if lock is None:
            return summary | {"skipped": "another poll is running"}
        key = cursor_key(system_id, division, entity)
        cursor = read_cursor(rt.connection, key)
        ingestor = _ingestor(rt)
        pages = records = queued = 0
        for page, page_cursor in SyncReader(client, STREAMS[entity]).read_since(cursor):
            now = datetime.now(UTC)
            envelopes = [
                envelope_of(r, system_id=system_id, division=division, entity=entity, received_at=now) for r in page
            ]
            accepted: list[Accepted] = ingestor.store(envelopes)
            cursor = save_cursor(rt.connection, key, page_cursor)  # only now: a crash before it re-reads the page
            pages, records = pages + 1, records + len(page)
            queued += sum(not a.duplicate for a in accepted)
            try:
                lock.reacquire()
            except LockError:
                raise TransientError(f"poll of {system_id} {entity}: lost the poll lock; stopping") from None
        log.info("poll %s %s division %s: %d records, %d queued", system_id, entity, division, records, queued)
        counts = {"pages": pages, "records": records, "queued": queued, "duplicates": records - queued}
        return summary | counts | {"cursor": cursor}


def poll_exact(system_id: str, entity: str = "SalesOrderHeaders") -> dict[str, Any]:
    """RQ job: enqueue a `process_event` job per record changed since the stored cursor, then schedule the next poll.

    Returns a summary (counts and cursor, no record data), or `{"skipped": ...}` when another poll of the
    same system, division and entity is running. Config errors raise PermanentError and stop the chain
    (`schedule_polls` restarts it when a worker starts); Exact errors fail this run, the next still comes.
    """
    if entity not in STREAMS:
        raise PermanentError(f"cannot poll Exact Online entity {entity!r}; known: {', '.join(STREAMS)}")
    rt = runtime.current()
    system = exact_system(rt.config, system_id)
    interval = poll_interval(system)
    job = get_current_job()
    try:
        summary = _read(rt, exact_client(rt, system_id), system_id, entity)
    finally:
        try:
            queue = make_queue(rt.connection, rt.config.gateway.queue)
            next_id = _schedule(queue, system_id, entity, interval, running=job.id if job else None)
        except Exception:  # never hide the poll's own outcome behind a scheduling failure
            log.exception("poll %s %s: scheduling the next poll failed", system_id, entity)
            next_id = None
    return summary | {"next_poll": next_id}


# -- scheduling --------------------------------------------------------------------------------------


def poll_job_ids(system_id: str, entity: str) -> list[str]:
    """The two deterministic job ids of a (system, entity) poll chain."""
    return [f"{POLL_JOB_PREFIX}{SOURCE}-{system_id}-{entity}-{slot}" for slot in SLOTS]


def _schedule(queue: Queue, system_id: str, entity: str, interval: int, *, running: str | None) -> str | None:
    """Schedule the next poll in `interval` s unless one is pending or running; its job id, or None."""
    free: list[str] = []
    for job_id in poll_job_ids(system_id, entity):
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
            POLL_FUNC,
            args=(system_id, entity),
            job_id=job_id,
            unique=True,
            job_timeout=JOB_TIMEOUT,
            result_ttl=max(3600, 3 * interval),
            failure_ttl=7 * 24 * 3600,
            description=f"poll {system_id} {entity}",
            meta={"poller": SOURCE, "system": system_id, "entity": entity},
        )
    except DuplicateJobError:
        return None  # another process scheduled it a moment ago
    return job_id


def schedule_polls(connection: redis.Redis, config: Config) -> list[str]:
    """Schedule the next poll of every polled (Exact system, entity) that has none pending; the new job ids.

    Safe to call from every worker at start-up: repeated or concurrent calls leave one pending poll each.
    """
    queue = make_queue(connection, config.gateway.queue)
    scheduled: list[str] = []
    for system_id, entities in polled_entities(config).items():
        system = exact_system(config, system_id)
        interval = poll_interval(system)
        for entity in entities:
            job_id = _schedule(queue, system_id, entity, interval, running=None)
            if job_id is not None:
                scheduled.append(job_id)
    return scheduled
