"""Renewals of what running jobs hold: one long-lived thread per worker process serves them all.

A running job keeps two things alive while it runs, however long it runs, and never after it ended:
its RQ heartbeat (workers/worker.py: dead-worker recovery) and its resource lock (workers/policy.py).
Each used to start a thread of its own per job, two threads per job; starting and joining them cost
more CPU than the no-op job itself. Now a job registers each renewal here (`renewing`) and one daemon
thread per process calls it every `every` seconds, first `every` after registration, until the job
deregisters it. Deregistering waits for a renewal in progress to finish, so nothing is renewed
after its work is done (a finished job's execution must not reappear in RQ's registries, a
released lock must not be taken back).

A renewal that raises is logged and tried again at its next turn; one that returns False is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger("koppel.worker")

IDLE_WAIT = 60.0
"""Seconds an idle thread sleeps at most: it wakes up earlier when a renewal is due sooner."""


@dataclass(eq=False)
class Renewal:
    renew: Callable[[], bool | None]
    every: float
    due: float
    name: str = ""
    running: bool = False
    active: bool = True


class Keepalive:
    """The renewals of one process and the thread that serves them, started on first use (a forked
    child starts afresh: it inherits neither the thread nor its parent's renewals)."""

    def __init__(self, name: str = "koppel-keepalive") -> None:
        self.name = name
        self._reset()
        ref = weakref.ref(self)

        def in_child() -> None:  # pragma: no cover - runs in a forked child
            me = ref()
            if me is not None:
                me._reset()

        os.register_at_fork(after_in_child=in_child)

    def _reset(self) -> None:
        lock = threading.Lock()
        self._wake = threading.Condition(lock)  # the thread waits on it for its next due time
        self._done = threading.Condition(lock)  # deregistering waits on it for a renewal in progress
        self._items: list[Renewal] = []
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf
        self._idle = IDLE_WAIT

    def add(self, renew: Callable[[], bool | None], every: float, name: str = "") -> Renewal:
        """Call `renew` every `every` s (the first time `every` s from now) until `remove`."""
        if every <= 0:
            raise ValueError("a renewal interval must be positive")
        item = Renewal(renew, every, time.monotonic() + every, name)
        with self._wake:
            self._items.append(item)
            self._idle = min(self._idle, every)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif item.due < self._wake_at:  # the thread sleeps past this one's turn: wake it
                self._wake.notify()
        return item

    def remove(self, item: Renewal) -> None:
        """Stop renewing `item`; returns once no renewal of it is in progress."""
        with self._wake:
            item.active = False
            with contextlib.suppress(ValueError):
                self._items.remove(item)
            while item.running:
                self._done.wait()

    @contextlib.contextmanager
    def renewing(self, renew: Callable[[], bool | None], every: float, name: str = "") -> Iterator[Renewal]:
        item = self.add(renew, every, name)
        try:
            yield item
        finally:
            self.remove(item)

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                due = [item for item in self._items if item.due <= now]
                if not due:
                    self._wake_at = min((item.due for item in self._items), default=now + self._idle)
                    self._wake.wait(self._wake_at - now)
                    self._wake_at = -math.inf  # awake: adding needs no notify
                    continue
                for item in due:
                    if not item.active:
                        continue
                    item.running = True
                    self._wake.release()
                    try:
                        keep = item.renew()
                    except Exception:  # a renewal must not end the thread that serves the others
                        log.exception("%s: renewal failed; next try in %.1f s", item.name or "renewal", item.every)
                        keep = True
                    finally:
                        self._wake.acquire()
                    item.running = False
                    item.due = time.monotonic() + item.every
                    if keep is False and item.active:
                        item.active = False
                        self._items.remove(item)
                    self._done.notify_all()


_keepalive = Keepalive()


def renewing(
    renew: Callable[[], bool | None], every: float, name: str = ""
) -> contextlib.AbstractContextManager[Renewal]:
    """The process's `Keepalive.renewing`: `renew` is called every `every` s while the block runs."""
    return _keepalive.renewing(renew, every, name)


__all__ = ["Keepalive", "Renewal", "renewing"]
