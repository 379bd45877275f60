"""Webhook lifecycle: the subscriptions a system holds for an endpoint, planned and brought in line.

`koppel endpoints sync` and the worker's scheduled check (`check`) run the same two steps for every
endpoint whose kind can manage its webhooks (`Connector.webhooks`), that names its API system
(`system = ...`) and feeds an enabled integration:

    plan   the topics the integrations' flows need (`Webhooks.topics`) against what the system holds
           (`Webhooks.current`), each Koppel subscription pointing at {public_url}/webhooks/{endpoint}
    apply  create what is missing; renew what expires soon (`Webhooks.renew_due`: Business Central's
           three-day subscriptions); repair drift (a wrong delivery URL or topic: updated, the secret set
           again, active); re-activate what the system disabled; delete duplicates and what no flow
           needs — and nothing else: a dry run stops after the plan.

Which subscriptions are Koppel's: those delivering to this endpoint's URL, and those named
"Koppel <endpoint>: <topic>" (the name Koppel creates them with; so a subscription still pointing at
an old public URL is found and repaired). Everything else on the system — other software's
webhooks, another endpoint's — is left alone and only counted. A subscription someone paused is
reported and left paused.

Every change is an activity-log entry (gateway/activity.py) of each integration the endpoint feeds
whose flows need the topic: it names the subscription and topic, never the secret. A subscription
found disabled (or pointing elsewhere, or at the wrong topic) lost deliveries: once repaired, the
system's reconciliation poll runs at once (workers/pollers.py `poll_now`) to fetch what was missed; so
does one re-created after the system deleted it (`Webhooks.vanished`: Business Central deletes a
subscription whose delivery failed).

Scheduling is the pollers' two-slot chain (`schedule_chain`): job ids `koppel-hooks-{endpoint}-a|b`,
every `webhook_check_interval()` seconds of the system's settings (WooCommerce:
`webhook_check_seconds`), the first one interval after a worker starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import redis
from rq import get_current_job

from connectors import registry
from connectors.contract import Context, Subscription, Webhooks
from gateway import keys, notify
from gateway.activity import Activity, ActivityLog
from gateway.config import Config, Endpoint, System
from gateway.errors import AuthFailed, ConfigError, KoppelError, TransientError
from gateway.ingest import make_queue
from workers import runtime
from workers.outage import UNREACHABLE, outage
from workers.pollers import poll_now, polled_streams, schedule_chain
from workers.switches import all_off

log = logging.getLogger("koppel.subscriptions")

CHECK_FUNC = "workers.subscriptions.check"
CHECK_JOB_PREFIX = "koppel-hooks-"
JOB_TIMEOUT = 600

Kind = Literal["create", "update", "enable", "renew", "delete", "keep", "paused"]
CHANGES: frozenset[str] = frozenset({"create", "update", "enable", "renew", "delete"})


@dataclass(frozen=True)
class Action:
    """One step of a plan. `lost` marks a repair after which deliveries are known to have been lost."""

    kind: Kind
    topic: str
    subscription: Subscription | None = None
    reason: str = ""
    lost: bool = False

    def describe(self) -> str:
        hook = f"webhook {self.subscription.id}" if self.subscription else "a webhook"
        verbs = {
            "create": f"create a webhook for {self.topic}",
            "update": f"repair {hook} ({self.topic})",
            "enable": f"re-activate {hook} ({self.topic})",
            "renew": f"renew {hook} ({self.topic})",
            "delete": f"delete {hook} ({self.subscription.topic if self.subscription else self.topic})",
            "keep": f"{hook} ({self.topic}) is in sync",
            "paused": f"{hook} ({self.topic}) is paused: left so; set it active in the system, or delete it and sync",
        }
        return verbs[self.kind] + (f": {self.reason}" if self.reason and self.kind != "keep" else "")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.kind, "topic": self.topic, "reason": self.reason}
        if self.subscription is not None:
            hook = asdict(self.subscription)
            hook["expires"] = self.subscription.expires.isoformat() if self.subscription.expires else None
            out["webhook"] = hook
        return out


@dataclass
class Plan:
    endpoint: str
    system: str
    url: str
    actions: list[Action]
    others: int = 0
    """Subscriptions on the system that are not this endpoint's: left alone."""
    done: list[str] = field(default_factory=list)
    """What `apply` did, one sentence per change."""
    polls: list[str] = field(default_factory=list)
    """Reconciliation polls started after a repair."""

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.kind in CHANGES]

    @property
    def in_sync(self) -> bool:
        return not self.changes

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "system": self.system, "url": self.url, "in_sync": self.in_sync,
                "actions": [a.as_dict() for a in self.actions], "others": self.others, "done": self.done,
                "polls": self.polls}  # fmt: skip


# -- which endpoints, which topics -------------------------------------------------------------------


@dataclass(frozen=True)
class Managed:
    """An endpoint whose subscriptions Koppel manages, with its system and the flows it feeds."""

    endpoint: Endpoint
    system: System
    webhooks: type[Webhooks]
    flows: tuple[str, ...]


def managed_endpoints(config: Config) -> list[Managed]:
    """Every endpoint linked to a system whose connector manages webhooks and that feeds an enabled integration."""
    found: list[Managed] = []
    for endpoint in config.endpoints:
        system = config.system(endpoint.system) if endpoint.system else None
        connector = registry.get(endpoint.kind)
        if system is None or connector.webhooks is None or connector.source is None:
            continue
        flows = [f for i in config.integrations_from(endpoint.id) for f in i.flows if f in connector.source.reads()]
        if flows:
            found.append(Managed(endpoint, system, connector.webhooks, tuple(dict.fromkeys(flows))))
    return found


def subscription_name(prefix: str, endpoint_id: str, topic: str) -> str:
    return f"{prefix} {endpoint_id}: {topic}"


def _owned(sub: Subscription, *, prefix: str, endpoint_id: str, url: str) -> bool:
    return sub.url == url or sub.name.startswith(f"{prefix} {endpoint_id}: ")


def _rank(sub: Subscription, url: str) -> tuple[bool, bool, int, str]:
    """Which of several subscriptions on one topic to keep: the right URL, active, the oldest."""
    return sub.url != url, sub.status != "active", int(sub.id) if sub.id.isdigit() else 0, sub.id


def plan(
    endpoint_id: str, system_id: str, url: str, wanted: Iterable[str], current: Iterable[Subscription], *,
    prefix: str = Webhooks.prefix, vanished: Iterable[str] = (), due: Callable[[Subscription], bool] | None = None,
) -> Plan:  # fmt: skip
    """What to do so that the system holds exactly one active subscription per wanted topic for the endpoint.
    `vanished`: topics whose subscription the system deleted (re-created, deliveries known lost); `due`:
    whether a subscription in sync expires soon enough to be renewed."""
    gone = set(vanished)
    topics = list(dict.fromkeys(wanted))
    subs = list(current)
    ours = [s for s in subs if _owned(s, prefix=prefix, endpoint_id=endpoint_id, url=url)]
    by_topic: dict[str, list[Subscription]] = {}
    for sub in ours:
        by_topic.setdefault(sub.topic, []).append(sub)
    spare = sorted((s for s in ours if s.topic not in topics), key=lambda s: _rank(s, url))
    actions: list[Action] = []
    for topic in topics:
        candidates = sorted(by_topic.get(topic, []), key=lambda s: _rank(s, url))
        if not candidates:
            if spare:
                sub = spare.pop(0)
                actions.append(Action("update", topic, sub, f"its topic was {sub.topic}", lost=True))
            elif topic in gone:
                reason = f"{system_id} deleted it (after failed deliveries); notifications since were lost"
                actions.append(Action("create", topic, reason=reason, lost=True))
            else:
                actions.append(Action("create", topic, reason="missing"))
            continue
        keep, *extra = candidates
        actions += [Action("delete", topic, sub, f"a duplicate of webhook {keep.id}") for sub in extra]
        if keep.url != url:
            actions.append(Action("update", topic, keep, f"its delivery URL was {keep.url}", lost=True))
        elif keep.status == "paused":
            actions.append(Action("paused", topic, keep))
        elif keep.status != "active":
            reason = f"{system_id} set it {keep.status} (after failed deliveries); deliveries since were lost"
            actions.append(Action("enable", topic, keep, reason, lost=True))
        elif due is not None and due(keep):
            until = f" {keep.expires:%Y-%m-%d %H:%M} UTC" if keep.expires else " soon"
            actions.append(Action("renew", topic, keep, f"it expires{until}"))
        else:
            actions.append(Action("keep", topic, keep))
    actions += [Action("delete", sub.topic, sub, "no flow of this endpoint needs its topic") for sub in spare]
    return Plan(endpoint_id, system_id, url, actions, others=len(subs) - len(ours))


# -- applying ----------------------------------------------------------------------------------------


def _flow_of(kind: str, topic: str) -> str | None:
    source = registry.get(kind).source
    return source.flow_of(topic.partition(".")[0]) if source is not None else None


def _note(connection: redis.Redis | None, config: Config, managed: Managed, action: Action, done: str,
          hook_id: str) -> None:  # fmt: skip
    """An activity-log entry per integration whose flows need the topic: the subscription and topic only."""
    if connection is None:
        return
    flow = _flow_of(managed.endpoint.kind, action.topic) or ""
    now = time.time()
    job = get_current_job()
    activity = ActivityLog(connection, config.retention.activity)
    for integration in config.integrations_from(managed.endpoint.id):
        if flow and flow not in integration.flows:
            continue
        activity.record(Activity(
            integration=integration.id, flow=flow, topic=action.topic, resource_id=f"webhook {hook_id}",
            outcome="created" if action.kind == "create" else "updated", received_at=now, done_at=now,
            reason=done, job_id=job.id if job is not None else "",
        ))  # fmt: skip


def _notify(connection: redis.Redis | None, config: Config, managed: Managed, action: Action, failed: str) -> None:
    """Tell the operator (gateway/notify.py) about a webhook the system disabled or deleted (deliveries
    were lost) and about a subscription about to expire that could not be renewed."""
    if connection is None:
        return
    system, endpoint = managed.system.id, managed.endpoint.id
    sync = f"`koppel endpoints sync --endpoint {endpoint}`"
    if action.kind == "renew" and failed and action.subscription is not None:
        _expiring(connection, config, managed, action.topic, action.subscription.expires, failed)
        return
    if action.lost and action.kind in ("enable", "create"):  # disabled, or deleted (a lost create)
        hook = f"webhook {action.subscription.id}" if action.subscription else "the webhook"
        kind = "webhook_disabled"
        reason = f"{system} disabled {hook} ({action.topic}) of endpoint {endpoint} after failed deliveries"
        if action.kind == "create":
            reason = f"{system} deleted the webhook for {action.topic} of endpoint {endpoint} after failed deliveries"
        if failed:
            reason += f"; Koppel could not restore it: {failed}"
            fix = f"make {config.gateway.public_url or 'the gateway'} reachable from {system}, then run {sync}"
        else:
            fix = (f"Koppel restored it and polls {system} for what was missed; if it happens again, check that "
                   f"{config.gateway.public_url or 'the gateway'} is reachable from {system} and answers 2xx")
    else:
        return
    for integration in config.integrations_from(endpoint):
        if integration.notify is not None:
            notify.record(connection, kind, reason, integration=integration.id, fix=fix)


EXPIRY_WARNING = 86400
"""A subscription that expires within this many seconds while the webhook check fails is reported."""


def _expiring(connection: redis.Redis, config: Config, managed: Managed, topic: str, expires: datetime | None,
              failed: str) -> None:  # fmt: skip
    """Tell the operator that a subscription about to expire was not renewed (the renewal, or the whole
    webhook check, failed)."""
    system, endpoint = managed.system.id, managed.endpoint.id
    when = f"at {expires:%Y-%m-%d %H:%M} UTC" if expires else "soon"
    reason = f"endpoint {endpoint}: the webhook subscription for {topic} expires {when} and was not renewed"
    fix = (f"{failed.rstrip('.')}. Fix that, then run `koppel endpoints sync --endpoint {endpoint}` (or wait for "
           f"the next check); once it expires, {system} sends no more notifications for {topic}")  # fmt: skip
    for integration in config.integrations_from(endpoint):
        if integration.notify is not None:
            notify.record(connection, "subscription_expiring", reason, integration=integration.id, fix=fix)


def _expiries_key(endpoint_id: str) -> str:
    return keys.notify("expiry", endpoint_id)


def _remember_expiries(connection: redis.Redis, endpoint_id: str, expiries: dict[str, datetime]) -> None:
    """The expiry of each subscription after a sync, for a later check that cannot reach the system."""
    key = _expiries_key(endpoint_id)
    with connection.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        if expiries:
            pipe.hset(key, mapping={topic: repr(when.timestamp()) for topic, when in expiries.items()})
            pipe.expire(key, 30 * 86400)
        pipe.execute()


def _unrenewed(connection: redis.Redis, config: Config, managed: Managed, error: Exception) -> None:
    """After a failed check: report every subscription known to expire within `EXPIRY_WARNING` s."""
    if not any(i.notify is not None for i in config.integrations_from(managed.endpoint.id)):
        return
    try:
        known = connection.hgetall(_expiries_key(managed.endpoint.id))
        for field, value in known.items():
            expires = datetime.fromtimestamp(float(keys.text(value)), UTC)
            if (expires - datetime.now(UTC)).total_seconds() <= EXPIRY_WARNING:
                _expiring(connection, config, managed, keys.text(field), expires,
                          f"the webhook check failed: {error}")  # fmt: skip
    except (redis.RedisError, ValueError) as exc:
        log.warning("endpoint %s: subscription expiries not read (%s)", managed.endpoint.id, type(exc).__name__)


def _apply_one(hooks: Webhooks, managed: Managed, plan_: Plan, action: Action) -> tuple[str, str, datetime | None]:
    """Run one change; (what was done, the subscription id, when the subscription now expires if it does)."""
    secret = managed.endpoint.secret.get_secret_value()
    name = subscription_name(hooks.prefix, managed.endpoint.id, action.topic)
    sub = action.subscription
    if action.kind == "create":
        made = hooks.create(action.topic, plan_.url, secret, name)
        why = f" ({action.reason})" if action.lost else ""
        return f"created webhook {made.id} for {action.topic} → {plan_.url}{why}", made.id, made.expires
    assert sub is not None
    if action.kind == "update":
        made = hooks.update(sub, topic=action.topic, url=plan_.url, secret=secret, name=name)
        return (f"repaired webhook {sub.id} ({action.topic}): {action.reason}; now → {plan_.url}, active", sub.id,
                made.expires)  # fmt: skip
    if action.kind == "renew":
        renewed = hooks.renew(sub, secret)
        until = f" until {renewed.expires:%Y-%m-%d %H:%M} UTC" if renewed.expires else ""
        return f"renewed webhook {sub.id} ({action.topic}){until}: {action.reason}", sub.id, renewed.expires
    if action.kind == "enable":
        enabled = hooks.enable(sub, secret)
        return f"re-activated webhook {sub.id} ({action.topic}): {action.reason}", sub.id, enabled.expires
    hooks.delete(sub)
    return f"deleted webhook {sub.id} ({sub.topic}): {action.reason}", sub.id, None


HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
"""How long an operator's sync (the CLI's, the console's) waits for a system."""

PUBLIC_URL_MISSING = ("gateway.public_url: required to manage webhooks (where systems reach this gateway, "
                      "e.g. https://koppel.example)")  # fmt: skip
"""What to set when no public URL is configured (`koppel endpoints sync`, the console's Webhooks page)."""


@dataclass
class SyncReport:
    """`sync_all`'s outcome: a plan per endpoint reached, and one sentence per endpoint that failed."""

    plans: list[Plan]
    failures: list[str]


def sync_all(
    config: Config, managed: Iterable[Managed], context: Context, *, connection: redis.Redis | None,
    dry_run: bool = False,
) -> SyncReport:  # fmt: skip
    """`sync_endpoint` for each endpoint; a system that refuses Koppel's keys or cannot be reached is one
    sentence naming the fix, and the other endpoints are synced still."""
    report = SyncReport([], [])
    for item in managed:
        endpoint, system = item.endpoint.id, item.system.id
        try:
            report.plans.append(sync_endpoint(config, item, context, connection=connection, dry_run=dry_run))
        except AuthFailed as exc:  # the connector's message names the fix (keys, write permission)
            report.failures.append(f"endpoint {endpoint}: {system} refused Koppel's keys: {exc}")
        except TransientError as exc:  # unreachable, 5xx, timeouts: where it was looked for, and what to check
            report.failures.append(
                f"endpoint {endpoint}: {system} could not be reached at {item.system.base_url}: {exc}; check "
                f"systems.{system}.base_url and that the shop answers, then run this again"
            )
        except KoppelError as exc:
            report.failures.append(f"endpoint {endpoint}: {system} could not be synced: {exc}")
    return report


def plan_lines(plan_: Plan, *, dry_run: bool) -> list[str]:
    """A plan as the operator reads it (the CLI prints these lines, the console shows them): what a dry
    run would do, or what was done."""
    others = f"; {plan_.others} other webhook(s) on {plan_.system} left alone" if plan_.others else ""
    lines = [f"endpoint {plan_.endpoint} → {plan_.url} (system {plan_.system}){others}"]
    if dry_run:
        lines += [f"  {'would ' if a.kind in CHANGES else ''}{a.describe()}" for a in plan_.actions]
        pending = f"  dry run: {len(plan_.changes)} change(s) not made"
        lines.append("  in sync: nothing to do" if plan_.in_sync else pending)
        return lines
    lines += [f"  {a.describe()}" for a in plan_.actions if a.kind in ("keep", "paused")]
    lines += [f"  {done}" for done in plan_.done]
    lines += [f"  reconciliation poll queued: {job_id}" for job_id in plan_.polls]
    lines.append("  in sync: nothing to do" if plan_.in_sync else f"  done: {len(plan_.done)} change(s)")
    return lines


def sync_endpoint(
    config: Config, managed: Managed, context: Context, *, connection: redis.Redis | None, dry_run: bool = False
) -> Plan:
    """Plan the endpoint's subscriptions and, unless `dry_run`, apply the plan: log every change (with
    `connection`) and start the reconciliation poll after a repair that means deliveries were lost.
    A KoppelError from the system (unreachable, keys refused) goes up, after what was done is kept."""
    url = config.gateway.webhook_url(managed.endpoint.id)
    if url is None:
        raise ConfigError([PUBLIC_URL_MISSING])
    hooks = managed.webhooks(managed.system, context)
    current = hooks.current()
    result = plan(managed.endpoint.id, managed.system.id, url, hooks.topics(managed.flows), current,
                  prefix=hooks.prefix, vanished=hooks.vanished(url, current), due=hooks.renew_due)  # fmt: skip
    if dry_run:
        return result
    lost = False
    expiries = {a.topic: a.subscription.expires for a in result.actions
                if a.kind == "keep" and a.subscription is not None and a.subscription.expires is not None}  # fmt: skip
    for action in result.changes:
        try:
            done, hook_id, expires = _apply_one(hooks, managed, result, action)
        except KoppelError as exc:
            _notify(connection, config, managed, action, f"{action.describe()} failed: {exc}")
            raise
        _notify(connection, config, managed, action, "")
        if expires is not None and action.kind != "delete":
            expiries[action.topic] = expires
        result.done.append(done)
        lost |= action.lost
        log.info("endpoint %s: %s", managed.endpoint.id, done)
        _note(connection, config, managed, action, done, hook_id)
    if connection is not None:
        _remember_expiries(connection, managed.endpoint.id, expiries)
    if lost and connection is not None and managed.system.id in polled_streams(config):
        result.polls = poll_now(connection, config, managed.system.id)
    return result


# -- the worker's scheduled check --------------------------------------------------------------------


def check_interval(system: System) -> int:
    return registry.get(system.kind).settings.of(system).webhook_check_interval()


def check_job_ids(endpoint_id: str) -> list[str]:
    return [f"{CHECK_JOB_PREFIX}{endpoint_id}-{slot}" for slot in ("a", "b")]


def _schedule(connection: redis.Redis, config: Config, managed: Managed, *, running: str | None) -> str | None:
    interval = check_interval(managed.system)
    if interval <= 0 or config.gateway.public_url is None:
        return None
    return schedule_chain(
        make_queue(connection, config.gateway.queue), CHECK_FUNC, (managed.endpoint.id,),
        check_job_ids(managed.endpoint.id), interval, running=running, timeout=JOB_TIMEOUT,
        description=f"check the webhooks of {managed.endpoint.id}",
        meta={"system": managed.system.id, "endpoint": managed.endpoint.id},
    )  # fmt: skip


def schedule_checks(connection: redis.Redis, config: Config) -> list[str]:
    """Schedule the next webhook check of every managed endpoint that has none pending; the new job ids.
    Without `[gateway] public_url` there is nothing to check against: one log line says so."""
    endpoints = managed_endpoints(config)
    if endpoints and config.gateway.public_url is None:
        log.info("webhook checks off: set [gateway] public_url to let Koppel manage the systems' webhooks")
        return []
    return [job_id for m in endpoints if (job_id := _schedule(connection, config, m, running=None)) is not None]


def check(endpoint_id: str) -> dict[str, Any]:
    """RQ job: sync one endpoint's subscriptions, then schedule the next check (also after a failure)."""
    rt = runtime.current()
    managed = next((m for m in managed_endpoints(rt.config) if m.endpoint.id == endpoint_id), None)
    if managed is None:  # a live reload took it out of the config (or its system's subscriptions): the chain ends
        log.info("endpoint %s: the config no longer has webhooks Koppel manages for it; its checks end", endpoint_id)
        return {"ended": f"endpoint {endpoint_id!r} has no webhooks Koppel manages in this config"}
    job = get_current_job()
    try:
        if all_off(rt.connection, rt.config, endpoint_id):  # the system cut Koppel off: its API would refuse
            log.info("endpoint %s: webhook check skipped: every integration it feeds is switched off "
                     "(`koppel integrations on ID` once the system is connected again)", endpoint_id)  # fmt: skip
            summary: dict[str, Any] = {"skipped": f"every integration {endpoint_id} feeds is switched off"}
        else:
            summary = sync_endpoint(rt.config, managed, rt.context(), connection=rt.connection).as_dict()
    except KoppelError as exc:
        log.warning("endpoint %s: webhook check failed: %s", endpoint_id, exc)
        _unrenewed(rt.connection, rt.config, managed, exc)
        raise
    finally:
        try:
            next_id = _schedule(rt.connection, rt.config, managed, running=job.id if job else None)
        except UNREACHABLE as exc:  # Redis away: the worker schedules the chain again when it is back
            outage.failed(exc, f"scheduling the next webhook check of {endpoint_id}")
            next_id = None
        except Exception:  # never hide the check's own outcome behind a scheduling failure
            log.exception("endpoint %s: scheduling the next webhook check failed", endpoint_id)
            next_id = None
    return summary | {"next_check": next_id}


__all__ = [
    "HTTP_TIMEOUT",
    "PUBLIC_URL_MISSING",
    "Action",
    "Managed",
    "Plan",
    "SyncReport",
    "check",
    "check_job_ids",
    "managed_endpoints",
    "plan",
    "plan_lines",
    "schedule_checks",
    "subscription_name",
    "sync_all",
    "sync_endpoint",
]
