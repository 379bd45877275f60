"""Replay failed jobs: by id, by integration, or all. Shared by `koppel replay` and operators' scripts."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from gateway.config import Config
from gateway.ingest import make_queue


@dataclass
class ReplayResult:
    requeued: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def failed_job_ids(connection: redis.Redis, config: Config, integration: str | None = None) -> list[str]:
    """Failed job ids, optionally only those whose event came from the integration's source."""
    queue = make_queue(connection, config.gateway.queue)
    ids: list[str] = queue.failed_job_registry.get_job_ids()  # rq leaves the property unannotated
    if integration is None:
        return ids
    source = next(i.source for i in config.integrations if i.id == integration)
    jobs = Job.fetch_many(ids, connection=connection, serializer=queue.serializer)
    return [job.id for job in jobs if job is not None and job.meta.get("endpoint") == source]


def replay(connection: redis.Redis, config: Config, job_ids: list[str]) -> ReplayResult:
    queue = make_queue(connection, config.gateway.queue)
    registry = queue.failed_job_registry
    result = ReplayResult()
    for job_id in job_ids:
        try:
            registry.requeue(job_id)
        except (NoSuchJobError, InvalidJobOperation):
            result.missing.append(job_id)
        else:
            result.requeued.append(job_id)
    return result
