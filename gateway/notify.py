"""Notification events: recorded cheaply where a problem shows, grouped, sent later by the dispatcher.

A producer (a failing job, a refused token refresh, a webhook the system disabled, ...) calls `record`:
one Redis round trip that adds to the *group* of its (scope, subject, kind, reason) — counting, keeping
the first few record ids — and opens it. The dispatcher (workers/notifier.py, run by every worker)
sends a group once its integrations' grouping window has passed: three orders failing for one reason
are one message. After a group is sent, the same problem is not sent again for `repeat_seconds`; what
comes in meanwhile collects in a new group that is sent when that time is over.

A group's scope is an integration (a job of it failed) or a system (its tokens, its API budget: every
integration using the system is told). Reasons are Koppel's own error sentences: they name records by
their ids, never payload data or credentials. `record` never raises: a notification must not break
the work that noticed the problem.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import redis

from gateway import keys
from gateway.config import NOTIFY_EVENTS, Config, Integration

log = logging.getLogger("koppel.notify")

Scope = Literal["integration", "system"]

EXAMPLES = 5
"""Record ids kept per group (the message names these and counts the rest)."""
GROUP_TTL = 7 * 24 * 3600
"""A group nobody sends (no integration is told about it) is forgotten after this long."""
OPEN = keys.notify("open")

__all__ = ["EXAMPLES", "NOTIFY_EVENTS", "Group", "group_id", "integrations_of", "record"]


def group_id(scope: Scope, subject: str, kind: str, reason: str) -> str:
    digest = hashlib.sha256(f"{scope}\n{subject}\n{kind}\n{reason}".encode()).hexdigest()[:20]
    return digest


def group_key(gid: str) -> str:
    return keys.notify("group", gid)


def examples_key(gid: str) -> str:
    return keys.notify("group", gid, "examples")


def sent_key(gid: str) -> str:
    return keys.notify("sent", gid)


def record(
    connection: redis.Redis,
    kind: str,
    reason: str,
    *,
    integration: str | None = None,
    system: str | None = None,
    item: str = "",
    noun: str = "",
    fix: str = "",
    now: float | None = None,
) -> None:
    """Add one occurrence to its group (integration or system scope: give one). `reason` is what went
    wrong (the grouping key with kind and scope); `item` the record it happened to ("order 4711");
    `noun` what is counted ("order"); `fix` what the operator should do."""
    if kind not in NOTIFY_EVENTS:
        raise ValueError(f"unknown notification kind {kind!r}")
    scope: Scope = "integration" if integration is not None else "system"
    subject = integration if integration is not None else system
    if subject is None:
        raise ValueError("a notification names an integration or a system")
    now = time.time() if now is None else now
    gid = group_id(scope, subject, kind, reason)
    key, examples = group_key(gid), examples_key(gid)
    try:
        with connection.pipeline(transaction=True) as pipe:
            fields = {"scope": scope, "subject": subject, "kind": kind, "reason": reason, "noun": noun, "fix": fix,
                      "last": repr(now)}  # fmt: skip
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's invariant Mapping (redis-py#2917)
            pipe.hsetnx(key, "first", repr(now))
            pipe.hincrby(key, "count", 1)
            if item:
                pipe.rpush(examples, item)
                pipe.ltrim(examples, 0, EXAMPLES - 1)
                pipe.expire(examples, GROUP_TTL)
            pipe.expire(key, GROUP_TTL)
            pipe.zadd(OPEN, {gid: now}, nx=True)
            pipe.zremrangebyscore(OPEN, "-inf", now - GROUP_TTL)  # groups no dispatcher ever took
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("%s %s: notification not recorded (Redis: %s)", scope, subject, type(exc).__name__)


@dataclass(frozen=True)
class Group:
    """One group as the dispatcher took it out of Redis."""

    id: str
    scope: Scope
    subject: str
    kind: str
    reason: str
    count: int
    first: float
    last: float
    noun: str = ""
    fix: str = ""
    examples: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, gid: str, raw: dict[str, str], examples: list[str]) -> Group | None:
        try:
            scope = raw["scope"]
            if scope not in ("integration", "system"):
                return None
            return cls(gid, "integration" if scope == "integration" else "system", raw["subject"], raw["kind"],
                       raw["reason"], int(raw.get("count", "1")), float(raw["first"]),
                       float(raw.get("last") or raw["first"]), raw.get("noun", ""), raw.get("fix", ""),
                       examples)  # fmt: skip
        except (KeyError, ValueError):
            return None


def integrations_of(config: Config, scope: str, subject: str) -> list[Integration]:
    """The integrations a group concerns: the integration itself, or every one whose source or target is
    the system (or an endpoint linked to it)."""
    if scope == "integration":
        return [i for i in config.integrations if i.id == subject]
    return [i for i in config.integrations if _uses(config, i, subject)]


def _uses(config: Config, integration: Integration, system_id: str) -> bool:
    api = config.api_system(integration.source)
    return system_id in (integration.source, integration.target) or (api is not None and api.id == system_id)
