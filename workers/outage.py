"""A worker process riding out a Redis outage: one log line when Redis goes away, one when it is back.

Every part of a worker that talks to Redis (the work loop, the inbox pump, the keepalive thread's
renewals, RQ's command listener, the registry maintenance) reports a failed Redis call here
(`Outage.failed`) instead of logging it, and a successful one (`Outage.ok`). The first failure of an
outage is logged as one WARNING naming what to check; the others are not; the first success after it
logs how long Redis was away and runs the `on_back` callbacks (the worker re-schedules its job chains).
`wait` sleeps between the tries of a caller that cannot go on without Redis: half the time the outage has
lasted so far, from 0.25 s up to 5 s (a backoff that needs no state per caller: threads share it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

log = logging.getLogger("koppel.worker")

UNREACHABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
"""What a Redis call raises when the server is away (as opposed to a command Redis refused)."""

BACKOFF_FIRST = 0.25
BACKOFF_CAP = 5.0


class Outage:
    """The Redis outages one process sees (thread-safe)."""

    def __init__(
        self, name: str = "worker", level: int = logging.WARNING, *,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        self.name = name
        self.level = level
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic time of the outage's first failure
        self._ended_at = -float("inf")  # monotonic time the last outage ended
        self.on_back: list[Callable[[], None]] = []

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException, where: str = "") -> None:
        """A Redis call failed because Redis is away: logged once per outage."""
        with self._lock:
            if self._since is not None:
                return
            self._since = self._clock()
        log.log(self.level, "%s: Redis is unreachable (%s%s); waiting for it, work resumes when it is back",
                    self.name, type(exc).__name__, f" in {where}" if where else "")  # fmt: skip

    def ok(self) -> None:
        """A Redis call went through: ends the outage, if there was one."""
        if self._since is None:
            return
        with self._lock:
            since, self._since = self._since, None
            if since is None:
                return
            self._ended_at = self._clock()
        log.log(self.level, "%s: Redis is back after %.1f s", self.name, self._ended_at - since)
        for callback in list(self.on_back):
            try:
                callback()
            except Exception as exc:  # a callback must not stop the others
                log.warning("%s: after the outage: %s failed (%s)", self.name, getattr(callback, "__name__", "a step"),
                            type(exc).__name__)  # fmt: skip

    def ended_within(self, seconds: float) -> bool:
        """Redis is away, or came back less than `seconds` ago."""
        return self._since is not None or self._clock() - self._ended_at < seconds

    def wait(self, stop: threading.Event | None = None) -> None:
        """Sleep before the next try (see the module docstring)."""
        since = self._since
        lasted = self._clock() - since if since is not None else 0.0
        delay = min(BACKOFF_CAP, max(BACKOFF_FIRST, lasted / 2))
        if stop is not None:
            stop.wait(delay)
        else:
            self._sleep(delay)

    def ping(self, connection: redis.Redis) -> bool:
        """Whether Redis answers now (the outage noted or ended accordingly)."""
        try:
            connection.ping()
        except UNREACHABLE as exc:
            self.failed(exc)
            return False
        self.ok()
        return True


outage = Outage()
"""The process's outage tracker (one worker per process)."""


__all__ = ["UNREACHABLE", "Outage", "outage"]
