"""Personal data and retention: the purge that enforces `[retention]`, and forgetting one person.

What Koppel holds, by kind, and how long (gateway/config.py, `RetentionSettings`):

    activity    koppel:activity:<integration>          entries older than `activity` are trimmed (XTRIM MINID)
    payloads    koppel:snapshot:<integration>:<job>    written with a TTL; none longer than `payloads`
    jobs        RQ's finished registry                 jobs (their arguments hold the payload) that ended
                                                       more than `jobs` ago are deleted
    failed      RQ's failed registry                   failed jobs older than `failed_jobs` are deleted
    inbox       koppel:inbox:<queue>                   never purged: an event waits there until its job
                                                       exists; those waiting longer than `inbox` are reported

`purge` runs on every worker, at its start and then every `purge_interval` (`PurgeLoop`; a lock lets one
worker of many purge per interval), and on demand (`koppel purge`). `forget` removes what Koppel holds about
one e-mail address (`koppel forget --email`). Neither ever removes an event not yet processed, nor the
ledgers, which hold record numbers and target ids only and keep every record written exactly once.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.utils import str_to_date

from gateway import keys
from gateway.activity import Activity
from gateway.config import Config
from gateway.ingest import inbox_key, make_queue
from workers.ledger import email_key
from workers.outage import UNREACHABLE, outage

log = logging.getLogger("koppel.retention")

PURGE_LOCK = keys.lock("purge")
BATCH = 500

_EMAIL = re.compile(r"^[^@\s\"'<>(),;:\\\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z0-9-]{2,}$")

UNTIMED = {
    "ledger": "record number → target id of what Koppel wrote: kept, so that nothing is written twice",
    "inflight": "record numbers, SKUs and e-mail digests whose write may have reached the target: kept until the "
    "write is settled",
    "cursor": "where a poller stands: a position, not data",
    "exact": "OAuth tokens and the Exact division: credentials, never personal data",
    "cache": "ids looked up in the systems (SKU → item, number → order, …), none keyed by a person",
    "inbox": "events waiting for their job: never dropped",
    "activity": "the activity log: trimmed by age, not by expiry",
}
"""Families of Koppel's keys that carry no expiry, and why (`koppel purge` lists what it finds)."""


def valid_email(address: str) -> bool:
    return len(address) <= 254 and _EMAIL.match(address) is not None


def _mentions(needle: str) -> re.Pattern[str]:
    """The address as a whole word of a (lower-cased) text: `jo@x.nl` is not found in `ajo@x.nl`."""
    return re.compile(rf"(?<![\w.+-]){re.escape(needle)}(?![\w-]|\.\w)")


# -- the purge ---------------------------------------------------------------------------------------


@dataclass
class Kind:
    """What the purge (or forget) did with one kind of data: the count, and the keys or ids concerned."""

    removed: int = 0
    items: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class PurgeReport:
    activity: Kind = field(default_factory=Kind)
    payloads: Kind = field(default_factory=Kind)
    jobs: Kind = field(default_factory=Kind)
    failed_jobs: Kind = field(default_factory=Kind)
    inbox: Kind = field(default_factory=Kind)
    untimed: dict[str, int] = field(default_factory=dict)
    """Keys without an expiry per family (only when asked: `audit=True`)."""

    def as_dict(self) -> dict[str, Any]:
        kinds = ("activity", "payloads", "jobs", "failed_jobs", "inbox")
        out: dict[str, Any] = {name: getattr(self, name).removed for name in kinds}
        return out | {"inbox_waiting": self.inbox.note}


def purge(connection: redis.Redis, config: Config, *, now: float | None = None, audit: bool = False) -> PurgeReport:
    """Remove what is older than `[retention]` allows, per kind (see the module docstring)."""
    now = time.time() if now is None else now
    retention = config.retention
    report = PurgeReport()
    cutoff = f"{int((now - retention.activity) * 1000)}-0"
    for key in _scan(connection, keys.ACTIVITY + "*", "stream"):
        removed = int(connection.xtrim(key, minid=cutoff, approximate=False))
        if removed:
            report.activity.removed += removed
            report.activity.items.append(f"{key}: {removed}")
        if connection.ttl(key) == -1:  # a stream with no expiry (written by hand, or PERSISTed)
            connection.expire(key, retention.activity)
    for chunk in _chunks(_scan(connection, keys.SNAPSHOT + "*")):
        too_long = [key for key, ttl in zip(chunk, _each(connection, "ttl", chunk), strict=True)
                    if ttl == -1 or ttl > retention.payloads]  # fmt: skip
        _each(connection, "expire", too_long, retention.payloads)
        report.payloads.items += too_long
    if report.payloads.items:
        report.payloads.note = f"{len(report.payloads.items)} kept longer than the retention now expire within it"
    queue = make_queue(connection, config.gateway.queue)
    for kind, registry, keep in (
        (report.jobs, queue.finished_job_registry, retention.jobs),
        (report.failed_jobs, queue.failed_job_registry, retention.failed_jobs),
    ):
        old = _ended_before(connection, registry.get_job_ids(cleanup=False), now - keep)
        for job in _jobs(connection, queue, old):
            job.delete(remove_from_queue=False)
            kind.removed += 1
            kind.items.append(job.id)
    stream, before = inbox_key(config.gateway.queue), f"{int((now - retention.inbox) * 1000)}"
    waiting = [keys.text(entry_id) for entry_id, _ in connection.xrange(stream, "-", before, BATCH) or [] if entry_id]
    if waiting:
        oldest = int(waiting[0].partition("-")[0]) / 1000
        report.inbox.note = (
            f"{len(waiting)}{'+' if len(waiting) == BATCH else ''} event(s) waiting longer than the retention "
            f"(the oldest {(now - oldest) / 86400:.1f} days): never dropped; is a worker running?"
        )
        report.inbox.items = waiting
    if audit:
        report.untimed = untimed_keys(connection)
    return report


def untimed_keys(connection: redis.Redis) -> dict[str, int]:
    """How many of Koppel's keys carry no expiry, per family (`koppel:<family>:…`)."""
    found: dict[str, int] = {}
    # Every delivery's mark always has its TTL: not asked one by one.
    ours = (key for key in _scan(connection, keys.PREFIX + "*") if not key.startswith(keys.DEDUPE))
    for chunk in _chunks(ours):
        for key, ttl in zip(chunk, _each(connection, "ttl", chunk), strict=True):
            if ttl == -1:
                family = key.split(":")[1]
                found[family] = found.get(family, 0) + 1
    return dict(sorted(found.items()))


def purge_due(connection: redis.Redis, config: Config, *, worker: str = "") -> PurgeReport | None:
    """The purge, unless another worker ran it less than `purge_interval` ago (a lock says so); what it
    did, or None when it was not due. Logged as one line of counts."""
    hold = max(1, int(config.retention.purge_interval * 0.9))
    if not connection.set(PURGE_LOCK, worker or "worker", nx=True, ex=hold):
        return None
    report = purge(connection, config)
    counts = report.as_dict()
    log.info("purge by [retention]: %s", ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "nothing to remove")
    return report


class PurgeLoop:
    """A worker's purge: at start and then every `purge_interval`, on a daemon thread of its own (a slow
    purge must not hold up the keepalive thread's heartbeats). Of all workers, one purges per interval."""

    def __init__(self, connection: redis.Redis, config: Config, worker: str = "") -> None:
        self.connection = connection
        self.config = config
        self.worker = worker
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="koppel-purge", daemon=True)

    def once(self) -> PurgeReport | None:
        try:
            return purge_due(self.connection, self.config, worker=self.worker)
        except UNREACHABLE as exc:  # noted once for the process (workers/outage.py)
            outage.failed(exc, "the purge by [retention]")
        except redis.RedisError as exc:
            log.warning("purge by [retention]: %s; next try in %d s", exc, self.config.retention.purge_interval)
        except Exception:
            log.exception("purge by [retention] failed; next try in %d s", self.config.retention.purge_interval)
        return None

    def run(self) -> None:
        while True:
            self.once()
            if self.stop.wait(self.config.retention.purge_interval):
                return

    def start(self) -> PurgeLoop:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


# -- forgetting one person --------------------------------------------------------------------------


@dataclass
class ForgetReport:
    email: str
    cached: Kind = field(default_factory=Kind)
    payloads: Kind = field(default_factory=Kind)
    failed_jobs: Kind = field(default_factory=Kind)
    jobs: Kind = field(default_factory=Kind)
    activity: Kind = field(default_factory=Kind)
    waiting: list[str] = field(default_factory=list)
    """Events not yet processed that carry the address (inbox entries, queued or retrying jobs): kept."""


@dataclass
class _Found:
    job_ids: set[str] = field(default_factory=set)
    resources: set[tuple[str, str]] = field(default_factory=set)
    """(endpoint, resource id) of the events that carried the address."""
    target_ids: set[str] = field(default_factory=set)
    """Ids the target gave the person's customer record (from the caches keyed by the address)."""


def forget(connection: redis.Redis, config: Config, email: str, *, dry_run: bool = False) -> ForgetReport:
    """Remove what Koppel holds about the person with this e-mail address (see `ForgetReport`)."""
    needle = email.strip().lower()
    report = ForgetReport(needle)
    found = _Found()
    mentions = _mentions(needle)
    _forget_cached(connection, needle, report, found, dry_run)
    _forget_jobs(connection, config, mentions, report, found, dry_run)
    for chunk in _chunks(_scan(connection, keys.SNAPSHOT + "*")):
        for key, value in zip(chunk, connection.mget(chunk), strict=True):
            if value is not None and mentions.search(keys.text(value).lower()):
                found.job_ids.add(key.rpartition(":")[2])
                report.payloads.items.append(key)
                if not dry_run:
                    connection.delete(key)
    report.payloads.removed = len(report.payloads.items)
    for entry_id, fields in _stream(connection, inbox_key(config.gateway.queue)):
        if mentions.search(keys.text(fields.get(b"e", b"")).lower()):
            report.waiting.append(f"inbox entry {entry_id} (job {keys.text(fields.get(b'id', b''))})")
    _forget_activity(connection, config, report, found, mentions, dry_run)
    return report


def _forget_cached(connection: redis.Redis, needle: str, report: ForgetReport, found: _Found, dry_run: bool) -> None:
    """Every cache hash with a field of the address (customer ids by e-mail, the fields last sent), and the
    ids cached for those customers (their contact person, delivery addresses)."""
    hashes = list(_scan(connection, keys.PREFIX + "cache:*", "hash"))
    for key in hashes:
        value = connection.hget(key, needle)
        if value is None:
            continue
        text = keys.text(value)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        target_id = str(parsed.get("id", "")) if isinstance(parsed, dict) else text.partition(":")[0]
        if target_id:
            found.target_ids.add(target_id)
        report.cached.items.append(key)
        if not dry_run:
            connection.hdel(key, needle)
    for key in hashes:
        name = key.rpartition(":")[2]
        if name not in ("contacts", "delivery-addresses") or not found.target_ids:
            continue
        fields = [
            keys.text(f) for f, _ in connection.hscan_iter(key)
            if keys.text(f).partition(":")[0] in {t.lower() for t in found.target_ids}
        ]  # fmt: skip
        if fields:
            report.cached.items.append(f"{key} ({len(fields)})")
            if not dry_run:
                connection.hdel(key, *fields)
    marker = email_key(needle)
    for key in _scan(connection, keys.PREFIX + "inflight:*:customers", "hash"):
        if connection.hexists(key, marker):  # a creation in flight: its digest of the address
            report.cached.items.append(key)
            if not dry_run:
                connection.hdel(key, marker)
    report.cached.removed = len(report.cached.items)


def _forget_jobs(connection: redis.Redis, config: Config, mentions: re.Pattern[str], report: ForgetReport,
                 found: _Found, dry_run: bool) -> None:  # fmt: skip
    """Finished and failed jobs whose event carried the address are deleted; those still to run are reported."""
    queue = make_queue(connection, config.gateway.queue)
    for kind, ids in (
        (report.failed_jobs, queue.failed_job_registry.get_job_ids(cleanup=False)),
        (report.jobs, queue.finished_job_registry.get_job_ids(cleanup=False)),
    ):
        for job, envelope in _carrying(connection, queue, ids, mentions):
            _note_event(found, job, envelope)
            kind.items.append(job.id)
            if not dry_run:
                job.delete(remove_from_queue=False)
        kind.removed = len(kind.items)
    pending = [
        *queue.get_job_ids(),
        *queue.scheduled_job_registry.get_job_ids(cleanup=False),
        *queue.started_job_registry.get_job_ids(cleanup=False),
        *queue.deferred_job_registry.get_job_ids(cleanup=False),
    ]
    for job, envelope in _carrying(connection, queue, pending, mentions):
        _note_event(found, job, envelope)
        report.waiting.append(f"job {job.id} ({job.get_status(refresh=False)})")


def _note_event(found: _Found, job: Job, envelope: dict[str, Any]) -> None:
    found.job_ids.add(job.id)
    if envelope.get("endpoint") and envelope.get("resource_id"):
        found.resources.add((str(envelope["endpoint"]), str(envelope["resource_id"])))


def _forget_activity(connection: redis.Redis, config: Config, report: ForgetReport, found: _Found,
                     mentions: re.Pattern[str], dry_run: bool) -> None:  # fmt: skip
    """Entries of the events that carried the address (their jobs, their records), of the person's customer
    record in a target, and any that mention the address (older versions took it as a customer's number)."""
    records: dict[str, set[str]] = {}  # integration → resource ids of those events
    for endpoint, resource_id in found.resources:
        for fed in config.integrations_from(endpoint):
            records.setdefault(fed.id, set()).add(resource_id)
    for key in _scan(connection, keys.ACTIVITY + "*", "stream"):
        integration = key[len(keys.ACTIVITY) :]
        ours = records.get(integration, set())
        matched: list[str] = []
        for entry_id, fields in _stream(connection, key):
            entry = Activity.parse(fields)
            if (
                entry.job_id in found.job_ids
                or (entry.resource_id and entry.resource_id in ours)
                or (entry.target_id and entry.target_id in found.target_ids and entry.flow == "customers")
                or mentions.search(" ".join((entry.number, entry.resource_id, entry.reason)).lower())
            ):
                matched.append(entry_id)
        if matched:
            report.activity.removed += len(matched)
            report.activity.items.append(f"{integration}: {', '.join(matched)}")
            if not dry_run:
                connection.xdel(key, *matched)


# -- reading Redis -----------------------------------------------------------------------------------


def _scan(connection: redis.Redis, match: str, type_: str | None = None) -> Iterator[str]:
    for key in connection.scan_iter(match=match, count=1000, _type=type_):
        yield keys.text(key)


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _each(connection: redis.Redis, command: str, keys_: list[str], *args: Any) -> list[Any]:
    """One command per key, in one round trip; the replies."""
    with connection.pipeline(transaction=False) as pipe:
        for key in keys_:
            getattr(pipe, command)(key, *args)
        return list(pipe.execute())


def _stream(connection: redis.Redis, key: str) -> Iterator[tuple[str, dict[bytes | str, bytes | str]]]:
    start = "-"
    while True:
        entries = connection.xrange(key, start, "+", BATCH) or []
        for entry_id, fields in entries:
            if entry_id is not None and fields is not None:
                yield keys.text(entry_id), fields
        if len(entries) < BATCH or entries[-1][0] is None:
            return
        start = "(" + keys.text(entries[-1][0])


def _ended_before(connection: redis.Redis, ids: list[str], moment: float) -> list[str]:
    """The jobs among `ids` that ended (or, never started, were made) before `moment` (epoch s): one field
    read per job, not the whole job with its payload."""
    old: list[str] = []
    for at in range(0, len(ids), BATCH):
        chunk = ids[at : at + BATCH]
        with connection.pipeline(transaction=False) as pipe:
            for job_id in chunk:
                pipe.hmget(Job.key_for(job_id), "ended_at", "created_at")
            for job_id, (ended, created) in zip(chunk, pipe.execute(), strict=True):
                try:
                    if (ended or created) and str_to_date(ended or created).timestamp() < moment:
                        old.append(job_id)
                except ValueError:  # not a time RQ wrote: left to RQ's own clean-up
                    continue
    return old


def _jobs(connection: redis.Redis, queue: Queue, ids: Iterable[str]) -> Iterator[Job]:
    ids = list(ids)
    for at in range(0, len(ids), BATCH):
        for job in Job.fetch_many(ids[at : at + BATCH], connection=connection, serializer=queue.serializer):
            if job is not None:
                yield job


def _carrying(
    connection: redis.Redis, queue: Queue, ids: Iterable[str], mentions: re.Pattern[str]
) -> Iterator[tuple[Job, dict[str, Any]]]:
    """The jobs whose arguments mention the address, with their event envelope (or {} for other jobs)."""
    for job in _jobs(connection, queue, ids):
        try:
            args = job.args
            text = json.dumps(args, ensure_ascii=False, default=str).lower()
        except Exception:  # noqa: S112 - a job whose data cannot be read carries nothing we can match
            continue
        if mentions.search(text):
            first = args[0] if args else None
            yield job, first if isinstance(first, dict) else {}


__all__ = [
    "ForgetReport",
    "Kind",
    "PurgeLoop",
    "PurgeReport",
    "forget",
    "purge",
    "purge_due",
    "untimed_keys",
    "valid_email",
]
