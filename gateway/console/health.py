"""What the console shows of an integration, read from Redis: its health, its failed jobs, the inbox."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Worker
from rq.job import Job

from connectors import registry
from connectors.tokens import TokenStore
from gateway.activity import Activity, ActivityLog
from gateway.config import Config, Integration, System
from gateway.errors import KoppelError
from gateway.ingest import InboxView, inbox_view, make_queue, resolve_job_id
from gateway.replay import failed_ids_by_endpoint, locate_job
from gateway.vault import SecretUnreadable
from workers.pollers import last_polls
from workers.switches import switched_off

__all__ = ["Backlog", "Budget", "Connection", "FailedJob", "FailedPage", "Health", "Poll", "backlog",
           "failed_job", "failed_page", "health", "not_failed", "oauth_systems"]  # fmt: skip

PAGE_SIZE = 50
"""Failed jobs per page of the console's failed work."""
LAST_EVENT_SCAN = 50
"""Activity entries the integrations page looks through for the last event handled (past switch markers)."""


@dataclass(frozen=True)
class Budget:
    system: str
    left: dict[str, int]


@dataclass(frozen=True)
class Poll:
    system: str
    stream: str
    at: float


@dataclass(frozen=True)
class Connection:
    """A system connected by OAuth consent: `state` is `connected`, `consent needed` or `refresh failing`."""

    system: System
    state: str
    since: float | None = None
    """When the tokens were obtained (connected) or the refresh was refused (refresh failing)."""
    reason: str = ""


@dataclass
class Health:
    integration: Integration
    off: str | None
    last: Activity | None
    """The last event the integration handled (not the marker a switch-off writes), within the last
    `LAST_EVENT_SCAN` entries."""
    failed: int
    budgets: list[Budget] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)


@dataclass(frozen=True)
class FailedJob:
    id: str
    description: str
    failed_at: float | None
    reason: str
    envelope: dict[str, Any] | None

    @property
    def event(self) -> str:
        """The event as an operator reads it: "order.created 8203 (#8203)"."""
        envelope = self.envelope or {}
        topic = str(envelope.get("topic") or "")
        if not topic:
            return self.description
        resource = str(envelope.get("resource_id") or "")
        number = record_number(envelope.get("payload"))
        return " ".join(part for part in (topic, resource, f"(#{number})" if number else "") if part)

    @property
    def endpoint(self) -> str:
        return str((self.envelope or {}).get("endpoint") or "")

    @property
    def short_reason(self) -> str:
        """The failure without the exception class's module path ("ExactRequestError: GET …")."""
        return re.sub(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*(?::|$))", "", self.reason)


@dataclass(frozen=True)
class FailedPage:
    jobs: list[FailedJob]
    total: int
    page: int
    pages: int


@dataclass(frozen=True)
class Backlog:
    """The inbox: accepted events no worker has made a job yet, and the workers that would."""

    queue: str
    view: InboxView
    workers: int


NUMBER_FIELDS = ("number", "orderNumber", "OrderNumber", "Number", "documentNumber")
"""Where the sources put a record's own number (WooCommerce, Squarespace, Exact Online, Business Central)."""


def record_number(payload: Any) -> str:
    """The record's number as its source shows it ("" when the payload names none)."""
    if not isinstance(payload, dict):
        return ""
    for name in NUMBER_FIELDS:
        value = payload.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return ""


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


def _connections(connection: redis.Redis, config: Config, integration: Integration) -> list[Connection]:
    out: list[Connection] = []
    for system in oauth_systems(config, integration):
        store = TokenStore(connection, system.id)
        try:
            tokens = store.load()
        except SecretUnreadable as unreadable:  # a wrong or missing KOPPEL_SECRET_KEY
            out.append(Connection(system, "consent needed", reason=str(unreadable)))
            continue
        refused = store.refresh_refused() if tokens is not None else None
        if tokens is None:
            out.append(Connection(system, "consent needed"))
        elif refused is not None:
            out.append(Connection(system, "refresh failing", refused[0], refused[1]))
        else:
            out.append(Connection(system, "connected", tokens.obtained_at or None))
    return out


def _last_event(activity: ActivityLog, integration: str) -> Activity | None:
    """The last entry of an event handled: a switch-off's own marker (no flow) left out."""
    return next((e for e in activity.recent(integration, LAST_EVENT_SCAN) if e.flow), None)


def health(connection: redis.Redis, config: Config) -> list[Health]:
    """Every configured integration's health, in config order. Failures are counted in one pass over the
    failed registry (`failed_ids_by_endpoint`), not once per integration."""
    activity = ActivityLog(connection)
    failed = failed_ids_by_endpoint(connection, config)
    out: list[Health] = []
    for integration in config.integrations:
        out.append(
            Health(
                integration=integration,
                off=switched_off(connection, integration.id),
                last=_last_event(activity, integration.id),
                failed=len(failed.get(integration.source, [])),
                budgets=_budgets(connection, config, integration),
                polls=_polls(connection, config, integration),
                connections=_connections(connection, config, integration),
            )
        )
    return out


def backlog(connection: redis.Redis, config: Config) -> Backlog:
    """The inbox's depth and oldest age, and how many workers serve the queue (none: nothing drains it)."""
    queue = config.gateway.queue
    view = inbox_view(connection, queue, limit=1)
    return Backlog(queue, view, Worker.count(queue=make_queue(connection, queue)))


def _reason(job: Job) -> str:
    """The last line of the job's failure (the exception's message), without the traceback."""
    result = job.latest_result()
    info = (result.exc_string if result is not None else None) or ""
    lines = [line for line in info.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _failed(job: Job) -> FailedJob:
    args = job.args
    envelope = args[0] if args and isinstance(args[0], dict) else None
    ended = job.ended_at.timestamp() if job.ended_at is not None else None
    return FailedJob(job.id, job.description or "", ended, _reason(job), envelope)


def failed_page(connection: redis.Redis, config: Config, integration: Integration, page: int = 1) -> FailedPage:
    """One page of the integration's failed jobs, newest first: ids from one pass over the failed registry,
    only the page's jobs read in full."""
    queue = make_queue(connection, config.gateway.queue)
    ids = failed_ids_by_endpoint(connection, config).get(integration.source, [])[::-1]
    pages = max(1, -(-len(ids) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    chosen = ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    jobs = Job.fetch_many(chosen, connection=connection, serializer=queue.serializer)
    found = sorted((_failed(job) for job in jobs if job is not None), key=lambda j: j.failed_at or 0, reverse=True)
    return FailedPage(found, len(ids), page, pages)


def failed_job(connection: redis.Redis, config: Config, integration: str, job_id: str) -> FailedJob | None:
    """The integration's failed job `job_id` (or the failed job it was merged into, workers/inbox.py), or None
    (not failed, or another integration's)."""
    queue = make_queue(connection, config.gateway.queue)
    job_id = resolve_job_id(connection, job_id)
    if connection.zscore(queue.failed_job_registry.key, job_id) is None:
        return None
    job = Job.fetch_many([job_id], connection=connection, serializer=queue.serializer)[0]
    source = next(i.source for i in config.integrations if i.id == integration)
    if job is None or job.meta.get("endpoint") != source:
        return None
    return _failed(job)


def not_failed(connection: redis.Redis, config: Config, job_id: str) -> str:
    """Where a job id that is not one of an integration's failed jobs is (`gateway.replay.JobWhere`): a direct
    event (run by a worker from the inbox without an RQ job) shows as finished, with when and what."""
    where = locate_job(connection, config.gateway.queue, job_id)
    if where.state == "failed":
        return "it is another integration's failed job"
    return where.sentence()
