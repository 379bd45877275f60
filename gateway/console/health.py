"""What the console shows of an integration, read from Redis: its health, its failed jobs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis
from rq.job import Job

from connectors import registry
from gateway.activity import Activity, ActivityLog
from gateway.config import Config, Integration, System
from gateway.errors import KoppelError
from gateway.ingest import make_queue
from gateway.replay import failed_job_ids
from workers.pollers import last_polls
from workers.switches import switched_off

__all__ = ["Budget", "FailedJob", "Health", "Poll", "failed_jobs", "health", "oauth_systems"]


@dataclass(frozen=True)
class Budget:
    system: str
    left: dict[str, int]


@dataclass(frozen=True)
class Poll:
    system: str
    stream: str
    at: float


@dataclass
class Health:
    integration: Integration
    off: str | None
    last: Activity | None
    failed: int
    budgets: list[Budget] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    connect: list[System] = field(default_factory=list)


@dataclass(frozen=True)
class FailedJob:
    id: str
    description: str
    failed_at: float | None
    reason: str
    envelope: dict[str, Any] | None


def _systems(config: Config, integration: Integration) -> list[System]:
    """The configured systems an integration touches: its source (or the system an endpoint is linked to)
    and its target."""
    found: list[System] = []
    for name in (integration.source, integration.target):
        system = config.system(name) or config.api_system(name)
        if system is not None and system not in found:
            found.append(system)
    return found


def oauth_systems(config: Config, integration: Integration) -> list[System]:
    """The integration's systems that need the operator's consent (OAuth), in config order."""
    return [s for s in _systems(config, integration) if registry.get(s.kind).oauth is not None]


def _budgets(connection: redis.Redis, config: Config, integration: Integration) -> list[Budget]:
    out: list[Budget] = []
    for system in _systems(config, integration):
        budget = registry.get(system.kind).budget
        if budget is None:
            continue
        try:
            left = budget(system, connection)
        except KoppelError:  # the system's settings are incomplete: `koppel config check` names what is missing
            continue
        if left is not None:
            out.append(Budget(system.id, left))
    return out


def _polls(connection: redis.Redis, config: Config, integration: Integration) -> list[Poll]:
    system = config.system(integration.source) or config.api_system(integration.source)
    if system is None:
        return []
    return [Poll(system.id, stream, at) for stream, at in sorted(last_polls(connection, system.id).items())]


def health(connection: redis.Redis, config: Config) -> list[Health]:
    """Every configured integration's health, in config order."""
    activity = ActivityLog(connection)
    out: list[Health] = []
    for integration in config.integrations:
        out.append(
            Health(
                integration=integration,
                off=switched_off(connection, integration.id),
                last=activity.latest(integration.id),
                failed=len(failed_job_ids(connection, config, integration.id)),
                budgets=_budgets(connection, config, integration),
                polls=_polls(connection, config, integration),
                connect=oauth_systems(config, integration),
            )
        )
    return out


def _reason(job: Job) -> str:
    """The last line of the job's failure (the exception's message), without the traceback."""
    result = job.latest_result()
    info = (result.exc_string if result is not None else None) or ""
    lines = [line for line in info.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def failed_jobs(connection: redis.Redis, config: Config, integration: str) -> list[FailedJob]:
    """The integration's failed jobs, newest first."""
    queue = make_queue(connection, config.gateway.queue)
    ids = failed_job_ids(connection, config, integration)
    jobs = Job.fetch_many(ids, connection=connection, serializer=queue.serializer)
    out: list[FailedJob] = []
    for job in jobs:
        if job is None:
            continue
        args = job.args
        envelope = args[0] if args and isinstance(args[0], dict) else None
        ended = job.ended_at.timestamp() if job.ended_at is not None else None
        out.append(FailedJob(job.id, job.description or "", ended, _reason(job), envelope))
    return sorted(out, key=lambda j: j.failed_at or time.time(), reverse=True)


def failed_job(connection: redis.Redis, config: Config, integration: str, job_id: str) -> FailedJob | None:
    return next((job for job in failed_jobs(connection, config, integration) if job.id == job_id), None)
