"""The activity log: per integration, what came in and what Koppel did with it.

One Redis stream per integration (`koppel:activity:<integration>`), one entry per event a flow
handled: when it was received and when it was done, topic and resource id, the source's record
number, the outcome (`created`, `updated`, `skipped`, `failed`, `retrying`, `error`), the target's
id, the target API calls it cost, and a human-readable reason. Never payload data, credentials or
personal data: an entry names records by their ids and numbers only (GDPR: the SPEC keeps logs
for a limited time and payloads not beyond processing).

Entries older than the retention (`[retention] activity`, default 30 days) are trimmed as new ones
arrive (XADD MINID, approximate), exactly by the purge (workers/retention.py), and an integration's
stream expires when nothing was logged for that long.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import redis

from gateway import keys

DEFAULT_RETENTION = 30 * 24 * 3600
"""`[retention] activity`'s default (gateway/config.py)."""
OUTCOMES = frozenset({"created", "updated", "skipped", "failed", "retrying", "error", "ignored"})


@dataclass(frozen=True)
class Activity:
    """One handled event of one integration. Times are epoch seconds (UTC)."""

    integration: str
    flow: str
    topic: str
    resource_id: str
    outcome: str
    received_at: float
    done_at: float
    number: str = ""
    """The source's record number (e.g. the WooCommerce order number), when the flow knows it."""
    target_id: str = ""
    calls: int = 0
    """Target API calls this event cost."""
    reason: str = ""
    job_id: str = ""
    level: str = ""
    """`error` for a skip the target reports as an error (an order already in Business Central); empty
    for the outcome's usual level."""

    @property
    def latency(self) -> float:
        """Seconds from the gateway's receipt to the flow's end."""
        return self.done_at - self.received_at

    def fields(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}

    @classmethod
    def parse(cls, raw: Mapping[bytes, bytes] | Mapping[bytes | str, bytes | str]) -> Activity:
        values = {keys.text(k): keys.text(v) for k, v in raw.items()}
        kwargs: dict[str, Any] = {}
        for spec in fields(cls):
            value = values.get(spec.name, "")
            if spec.type == "float":
                kwargs[spec.name] = float(value or 0)
            elif spec.type == "int":
                kwargs[spec.name] = int(value or 0)
            else:
                kwargs[spec.name] = value
        return cls(**kwargs)


def epoch(moment: datetime) -> float:
    return moment.timestamp()


class ActivityLog:
    def __init__(self, connection: redis.Redis, retention: int = DEFAULT_RETENTION) -> None:
        self.connection = connection
        self.retention = retention

    def record(self, activity: Activity) -> None:
        self.record_many([activity])

    def record_many(self, activities: list[Activity], pipe: redis.client.Pipeline | None = None) -> None:
        """Log entries in one round trip (or queued on `pipe`, which the caller executes)."""
        for activity in activities:
            if activity.outcome not in OUTCOMES:
                raise ValueError(f"unknown activity outcome {activity.outcome!r}")
        oldest_ms = int((time.time() - self.retention) * 1000)
        own = pipe is None
        target = self.connection.pipeline(transaction=False) if pipe is None else pipe
        try:
            logs = dict.fromkeys(keys.activity(activity.integration) for activity in activities)
            for activity in activities:
                # redis-py types `fields` as an invariant dict of every encodable type (redis-py#2917).
                fields: Any = activity.fields()
                target.xadd(keys.activity(activity.integration), fields, minid=oldest_ms, approximate=True)
            for key in logs:  # once per log, after its lines
                target.expire(key, self.retention)
            if own:
                target.execute()
        finally:
            if own:
                target.reset()

    def entries(self, integration: str, *, since: float | None = None, count: int | None = None) -> list[Activity]:
        """The integration's entries, oldest first; `since` (epoch s) keeps those logged from then on."""
        start = f"{int(since * 1000)}-0" if since is not None else "-"
        entries = self.connection.xrange(keys.activity(integration), start, "+", count) or []
        return [Activity.parse(raw) for _, raw in entries if raw is not None]

    def recent(self, integration: str, count: int = 100) -> list[Activity]:
        """The integration's last `count` entries, newest first."""
        entries = self.connection.xrevrange(keys.activity(integration), "+", "-", count) or []
        return [Activity.parse(raw) for _, raw in entries if raw is not None]

    def latest(self, integration: str) -> Activity | None:
        """The integration's last entry, if any."""
        found = self.recent(integration, 1)
        return found[0] if found else None


__all__ = ["OUTCOMES", "Activity", "ActivityLog", "epoch"]
