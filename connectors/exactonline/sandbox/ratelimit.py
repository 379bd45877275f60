"""Exact Online's rate limits, per division, in fixed windows on the sandbox's clock (PLATFORMS.md §4).

Minutely and daily counts; all six `X-RateLimit-*` headers (resets in epoch milliseconds) on every
call, but only the minutely ones on the 429 of an exhausted minute. Switched off, there are no limits
and no headers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol


class Limits(Protocol):
    per_minute: int
    per_day: int
    rate_limits: bool


@dataclass
class Window:
    division: int
    start_ms: int
    received: int = 0
    accepted: int = 0
    throttled: int = 0


class RateLimits:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.windows: dict[tuple[int, int], Window] = {}
        self.day_used: Counter[tuple[int, int]] = Counter()

    def check(self, division: int, limits: Limits) -> tuple[bool, dict[str, str]]:
        """Whether the call is allowed, and the headers to answer with."""
        if not limits.rate_limits:
            return True, {}
        now_ms = int(self.clock() * 1000)
        minute, day = now_ms // 60_000, now_ms // 86_400_000
        window = self.windows.setdefault((division, minute), Window(division, minute * 60_000))
        window.received += 1
        minutely = {
            "X-RateLimit-Minutely-Limit": str(limits.per_minute),
            "X-RateLimit-Minutely-Reset": str((minute + 1) * 60_000),
        }
        daily = {"X-RateLimit-Limit": str(limits.per_day), "X-RateLimit-Reset": str((day + 1) * 86_400_000)}
        if limits.per_minute and window.accepted >= limits.per_minute:
            window.throttled += 1
            return False, {**minutely, "X-RateLimit-Minutely-Remaining": "0"}
        if limits.per_day and self.day_used[(division, day)] >= limits.per_day:
            window.throttled += 1
            return False, {
                **minutely,
                "X-RateLimit-Minutely-Remaining": str(limits.per_minute - window.accepted),
                **daily,
                "X-RateLimit-Remaining": "0",
            }
        window.accepted += 1
        self.day_used[(division, day)] += 1
        return True, {
            **minutely,
            "X-RateLimit-Minutely-Remaining": str(max(0, limits.per_minute - window.accepted)),
            **daily,
            "X-RateLimit-Remaining": str(max(0, limits.per_day - self.day_used[(division, day)])),
        }

    def stats(self) -> list[dict[str, Any]]:
        return [asdict(w) for w in sorted(self.windows.values(), key=lambda w: (w.division, w.start_ms))]

    def clear(self) -> None:
        self.windows.clear()
        self.day_used.clear()
