"""Replay failed jobs: by id, by integration, or all. Shared by `koppel replay` and operators' scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from gateway.config import Config
from gateway.ingest import make_queue, merged_into

META_BATCH = 1000
"""Jobs' meta read per pipelined round trip."""


@dataclass
class ReplayResult:
    requeued: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)
    """A merged event's id given → the id of the job that ran it (workers/inbox.py), which was requeued."""


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
