"""Replay failed jobs: by id, by integration, or all, and say where a job id that is not failed is. Shared by
`koppel replay`, `koppel inbox --job`, the admin API, the console and operators' scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from gateway.config import Config
from gateway.ingest import InboxEntry, done_record, find_in_inbox, make_queue, merged_into

META_BATCH = 1000
"""Jobs' meta read per pipelined round trip."""


@dataclass
class ReplayResult:
    requeued: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)
    """A merged event's id given → the id of the job that ran it (workers/inbox.py), which was requeued."""


@dataclass(frozen=True)
class JobWhere:
    """Where the event a 2xx answer named `job_id` is now (`locate_job`)."""

    job_id: str
    runs_as: str
    """The job that runs it: `job_id`, or the job the inbox pump merged it into (an event for the same record)."""
    state: str
    """"inbox" (accepted, not yet taken by a worker), an RQ job's status ("queued", "started", "failed",
    "finished", …), "finished" for a direct event, or "unknown" (expired, or never answered)."""
    direct: bool = False
    """Run by a worker straight from the inbox, without an RQ job (workers/inbox.py, `[gateway] direct_events`):
    rq-dashboard does not list it; its outcome is kept as `koppel:done:<id>` (gateway.ingest.done_record)."""
    description: str = ""
    ended_at: str | None = None
    """When it finished or failed (ISO 8601, UTC)."""
    worker: str = ""
    result: Any = None
    """A finished job's summary (process_event's: ids and outcomes, never payload data)."""
    inbox: InboxEntry | None = None

    @property
    def merged(self) -> bool:
        return self.runs_as != self.job_id

    def as_dict(self) -> dict[str, Any]:
        """As `--json` gives it (`koppel replay`'s `where`, `koppel inbox --job`'s `job`)."""
        return {"job_id": self.job_id, "runs_as": self.runs_as, "state": self.state, "direct": self.direct,
                "description": self.description, "ended_at": self.ended_at, "worker": self.worker,
                "result": self.result}  # fmt: skip

    def status(self) -> str:
        """What it is now, to follow "it" or "which": "is queued", "finished at … (run directly …)", "is gone …"."""
        if self.direct:
            by = f" by worker {self.worker}" if self.worker else ""
            return (f"finished at {self.ended_at or 'an unknown time'} ({self.description}; run directly from the "
                    f"inbox{by}, no RQ job: rq-dashboard does not list it, `koppel activity` has its outcome)")
        if self.state == "unknown":
            return "is gone (finished and expired)"
        return f"is {self.state}"

    def sentence(self) -> str:
        """Where it is, for an operator who expected a failed job."""
        if self.merged:
            return f"it was merged into job {self.runs_as} (an event for the same record, run as one job), which " + (
                self.status())
        if self.inbox is not None:
            entry = self.inbox
            return (f"it is in the inbox, accepted at {entry.received_at} ({entry.endpoint} {entry.topic} "
                    f"{entry.resource_id}), not yet taken by a worker: a running `koppel worker` runs it "
                    "(`koppel inbox` lists them)")  # fmt: skip
        if self.state == "unknown":
            return "no such job (finished and expired, or unknown)"
        return f"it {self.status()}, not failed"


def locate_job(connection: redis.Redis, queue_name: str, job_id: str) -> JobWhere:
    """Where the event answered with `job_id` is: merged aliases resolved; then an RQ job of that id, a direct
    event's kept outcome, the inbox (scanned: an operator's look-up), or unknown."""
    group = merged_into(connection, job_id)
    target = group or job_id
    job = make_queue(connection, queue_name).fetch_job(target)
    if job is not None:
        status = job.get_status()
        state = status.value if status is not None else "unknown"
        ended = job.ended_at.replace(tzinfo=job.ended_at.tzinfo or UTC).isoformat() if job.ended_at else None
        result = job.return_value() if state == "finished" else None
        return JobWhere(job_id, target, state, description=job.description or "", ended_at=ended,
                        worker=job.worker_name or "", result=result)  # fmt: skip
    done = done_record(connection, target)
    if done is not None:
        return JobWhere(job_id, target, str(done.get("status") or "finished"), direct=True,
                        description=str(done.get("description") or ""), ended_at=done.get("ended_at"),
                        worker=str(done.get("worker") or ""), result=done.get("result"))  # fmt: skip
    entry = None if group is not None else find_in_inbox(connection, queue_name, job_id)
    if entry is not None:
        return JobWhere(job_id, target, "inbox", description=f"{entry.endpoint} {entry.topic} {entry.resource_id}",
                        inbox=entry)  # fmt: skip
    return JobWhere(job_id, target, "unknown")


def failed_ids_by_endpoint(connection: redis.Redis, config: Config) -> dict[str, list[str]]:
    """Every failed job id grouped by the endpoint its event came from (the job's `meta["endpoint"]`; "" when
    it names none), in the registry's order (by expiry, to the second: oldest failure first). One pass: the
    registry's ids, then pipelined HGETs of each job's meta (not its arguments: an event payload can be large)."""
    queue = make_queue(connection, config.gateway.queue)
    ids: list[str] = queue.failed_job_registry.get_job_ids()
    metas: list[Any] = []
    for start in range(0, len(ids), META_BATCH):
        with connection.pipeline(transaction=False) as pipeline:
            for job_id in ids[start : start + META_BATCH]:
                pipeline.hget(Job.key_for(job_id), "meta")
            metas += pipeline.execute()
    grouped: dict[str, list[str]] = {}
    for job_id, raw in zip(ids, metas, strict=True):
        try:
            meta = queue.serializer.loads(raw) if raw else {}
        except ValueError:  # meta another program wrote: it names no endpoint
            meta = {}
        endpoint = meta.get("endpoint") if isinstance(meta, dict) else None
        grouped.setdefault(endpoint if isinstance(endpoint, str) else "", []).append(job_id)
    return grouped


def failed_job_ids(connection: redis.Redis, config: Config, integration: str | None = None) -> list[str]:
    """Failed job ids (oldest failure first), optionally only those whose event came from the integration's
    source."""
    if integration is None:
        queue = make_queue(connection, config.gateway.queue)
        return list(queue.failed_job_registry.get_job_ids())
    source = next(i.source for i in config.integrations if i.id == integration)
    return failed_ids_by_endpoint(connection, config).get(source, [])


def _requeueable(connection: redis.Redis, registry: FailedJobRegistry, job_id: str) -> None:
    """What the registry's `requeue` checks, changing nothing: the job exists and is in the failed registry."""
    if not connection.exists(Job.key_for(job_id)):
        raise NoSuchJobError(job_id)
    if connection.zscore(registry.key, job_id) is None:
        raise InvalidJobOperation(job_id)


def replay(connection: redis.Redis, config: Config, job_ids: list[str], *, dry_run: bool = False) -> ReplayResult:
    """Requeue the failed jobs `job_ids`; with `dry_run`, requeue none: the result says what would be. An id
    the inbox pump merged into another job's (an event for the same record waiting beside it) requeues that
    job, once however many of its ids are given."""
    queue = make_queue(connection, config.gateway.queue)
    registry = queue.failed_job_registry
    result = ReplayResult()
    for job_id in job_ids:
        group = merged_into(connection, job_id)
        target = group or job_id
        if group is not None:
            result.merged[job_id] = group
        if target in result.requeued:
            continue
        try:
            if dry_run:
                _requeueable(connection, registry, target)
            else:
                registry.requeue(target)
        except (NoSuchJobError, InvalidJobOperation):
            result.merged.pop(job_id, None)
            result.missing.append(job_id)
        else:
            result.requeued.append(target)
    return result
