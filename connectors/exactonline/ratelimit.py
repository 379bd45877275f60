"""One API budget per Exact division, shared by every worker process through Redis.

Exact Online rations calls per app per company (division): 60 per minute and 5 000 per day; excess
calls get 429. Every response carries `X-RateLimit-Minutely-Limit/-Remaining/-Reset` and the daily
`X-RateLimit-Limit/-Remaining/-Reset`; resets are epoch **milliseconds**; when the minutely budget is
exhausted Exact sends only the minutely headers.

How the shared budget works (all state in one Redis hash per division, changed only by Lua scripts,
so any number of processes and threads take slots atomically):

* `acquire()` takes one slot from the minutely and the daily window. Before Exact has said anything
  the windows are local guesses (configured limit, window starting now); when a window's reset has
  passed it rolls forward on the same grid, so windows learnt from Exact stay aligned with Exact's.
  No slot free → sleep until the window resets (plus a small margin and jitter) and try again. When
  the wait would pass the bound (`Limits.max_wait`, e.g. because the DAILY budget is gone) it raises
  `RateLimited(retry_after=…)`, a TransientError: the RQ job is retried later instead of blocking a
  worker for hours.
* `observe(headers)` folds Exact's headers into the shared state: a newer window is adopted, the same
  window keeps the lower remaining count (our in-flight calls are not in Exact's count yet), stale
  answers from an older window are ignored. A configured limit below Exact's keeps headroom (other
  apps on the same company).
* `throttled(headers)` records a 429: the window is marked exhausted until its reset, so every worker
  waits instead of adding to the storm.

`Limits(enabled=False)` switches the budget off (sandbox benchmarks): `acquire` is free and a 429
is waited out from its headers directly. Clock and sleep are injectable for tests.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from connectors.exactonline.errors import RateLimited
from gateway import keys, notify

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DAY_MS = 86_400_000
LOW_BUDGET = 0.1
"""Share of the daily budget left below which the operator is told (gateway/notify.py `budget_low`)."""
LOW_BUDGET_EVERY = 60.0
"""Seconds between two such records by one process (every call below the mark would otherwise write one)."""
_told_at: dict[str, float] = {}

_ACQUIRE = """
local key, now = KEYS[1], tonumber(ARGV[1])
local conf = {m = tonumber(ARGV[2]), d = tonumber(ARGV[3])}
local span = {m = 60000, d = 86400000}
local state, wait, which = {}, 0, ''
for _, p in ipairs({'m', 'd'}) do
  local h = redis.call('HMGET', key, p .. 'slimit', p .. 'rem', p .. 'reset', p .. 'src')
  local limit, slimit = conf[p], tonumber(h[1])
  if slimit and (limit == 0 or slimit < limit) then limit = slimit end
  if limit > 0 then
    local rem, reset, src = tonumber(h[2]), tonumber(h[3]), h[4]
    if not reset then
      reset, rem, src = now + span[p], limit, 'local'
    elseif now >= reset then
      reset = reset + span[p] * (math.floor((now - reset) / span[p]) + 1)
      rem, src = limit, 'local'
    end
    if rem > limit then rem = limit end
    state[p] = {rem, reset, src}
    if rem <= 0 and reset - now > wait then wait, which = reset - now, p end
  end
end
if wait > 0 then return {wait, which} end
for p, s in pairs(state) do
  redis.call('HSET', key, p .. 'rem', s[1] - 1, p .. 'reset', s[2], p .. 'src', s[3])
end
redis.call('PEXPIRE', key, ARGV[4])
return {0, '', state.m and state.m[2] or 0}
"""

_OBSERVE = """
local key, now = KEYS[1], tonumber(ARGV[1])
local function fold(p, conf, slimit, srem, sreset)
  if slimit >= 0 then redis.call('HSET', key, p .. 'slimit', slimit) end
  if srem < 0 or sreset <= now then return end
  local eff = srem
  if slimit >= 0 and conf > 0 and slimit > conf then eff = srem - (slimit - conf) end
  if eff < 0 then eff = 0 end
  local h = redis.call('HMGET', key, p .. 'rem', p .. 'reset', p .. 'src')
  local rem, reset, src = tonumber(h[1]), tonumber(h[2]), h[3]
  if (not reset) or (not rem) or now >= reset then
    rem = eff
  elseif sreset == reset or src == 'local' then
    if eff < rem then rem = eff end
  elseif sreset > reset then
    rem = eff
  else
    return
  end
  redis.call('HSET', key, p .. 'rem', rem, p .. 'reset', sreset, p .. 'src', 'server')
end
fold('m', tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
fold('d', tonumber(ARGV[4]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]))
redis.call('PEXPIRE', key, ARGV[2])
return 1
"""

_BLOCK = """
local key, now, p, untl = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local h = redis.call('HMGET', key, p .. 'reset', p .. 'src')
local reset = tonumber(h[1])
if reset and reset > now and h[2] == 'server' and reset >= untl then untl = reset end
redis.call('HSET', key, p .. 'rem', 0, p .. 'reset', untl, p .. 'src', 'server')
redis.call('PEXPIRE', key, ARGV[4])
return untl
"""


@dataclass(frozen=True)
class Limits:
    """The budget of one division. A limit of 0 means "no limit of that kind"."""

    per_minute: int = 60
    per_day: int = 5000
    max_wait: float = 120.0
    """Longest a caller blocks for a slot; beyond it `RateLimited` is raised (retry the job later)."""
    enabled: bool = True
    margin: float = 0.25
    """Seconds added to every wait: clock skew between us and Exact, plus the reset's rounding."""

    @classmethod
    def off(cls) -> Limits:
        return cls(enabled=False)


@dataclass(frozen=True)
class Window:
    limit: int | None
    remaining: int | None
    reset_ms: int | None


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def read_headers(headers: Mapping[str, str]) -> tuple[Window | None, Window | None]:
    """(minutely, daily) windows from Exact's headers; None for a window whose headers are absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    windows: list[Window | None] = []
    for prefix in ("x-ratelimit-minutely-", "x-ratelimit-"):
        remaining, reset = _int(lowered, prefix + "remaining"), _int(lowered, prefix + "reset")
        if remaining is None and reset is None:
            windows.append(None)
        else:
            windows.append(Window(_int(lowered, prefix + "limit"), remaining, reset))
    return windows[0], windows[1]


class RateLimiter:
    """Exact's per-division API budget, shared through Redis by every worker (see module docstring)."""

    def __init__(
        self,
        conn: redis.Redis | None,
        division: int | str,
        limits: Limits | None = None,
        *,
        namespace: str = keys.RATELIMIT,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        system_id: str | None = None,
    ) -> None:
        self.conn = conn
        self.division = str(division)
        self.system_id = system_id
        """The system whose budget this is: named when it runs low (without, nobody is told)."""
        self.limits = limits or Limits()
        if conn is None and self.limits.enabled:
            raise ValueError("a shared rate limit needs Redis; pass Limits.off() to run without one")
        self.key = f"{namespace}:{self.division}"
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter
        self.waited = 0.0
        """Seconds this limiter has slept in total (for metrics)."""
        self.slot_window = 0
        """Reset (epoch ms) of the minutely window the last granted slot belongs to."""
        if conn is not None:
            self._acquire = conn.register_script(_ACQUIRE)
            self._observe = conn.register_script(_OBSERVE)
            self._block = conn.register_script(_BLOCK)

    @classmethod
    def unlimited(
        cls, *, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep
    ) -> RateLimiter:
        """No shared budget; a 429 is still waited out (bounded) from its headers."""
        return cls(None, "-", Limits.off(), clock=clock, sleep=sleep)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _ttl_ms(self) -> int:
        return 2 * DAY_MS

    def deadline(self) -> float:
        return self.clock() + self.limits.max_wait

    def acquire(self, *, deadline: float | None = None) -> float:
        """Take one call slot, sleeping while the budget is exhausted. Returns the seconds waited.

        Raises RateLimited when the next slot is further away than `deadline` (default: now + max_wait).
        """
        if not self.limits.enabled:
            return 0.0
        deadline = self.deadline() if deadline is None else deadline
        waited = 0.0
        while True:
            wait_ms, which, *slot = self._acquire(
                keys=[self.key],
                args=[self._now_ms(), self.limits.per_minute, self.limits.per_day, self._ttl_ms()],
            )
            if int(wait_ms) <= 0:
                self.slot_window = int(slot[0]) if slot else 0
                return waited
            window = "daily" if (which.decode() if isinstance(which, bytes) else which) == "d" else "minutely"
            waited += self._wait(int(wait_ms) / 1000, deadline, window)

    def _wait(self, seconds: float, deadline: float, window: str) -> float:
        pause = seconds + self.limits.margin + self.jitter() * self.limits.margin
        if self.clock() + pause > deadline:
            raise RateLimited(
                f"Exact {window} API budget of division {self.division} is used up; retry in {seconds:.0f} s",
                retry_after=seconds,
                window=window,
            )
        log.info("exact division %s: %s API budget used up, waiting %.1f s", self.division, window, pause)
        self.sleep(pause)
        self.waited += pause
        return pause

    def observe(self, headers: Mapping[str, str]) -> None:
        """Fold a response's rate-limit headers into the shared state."""
        if not self.limits.enabled:
            return
        minutely, daily = read_headers(headers)
        if minutely is None and daily is None:
            return
        args: list[Any] = [self._now_ms(), self._ttl_ms(), self.limits.per_minute, self.limits.per_day]
        for window in (minutely, daily):
            if window is None:
                args += [-1, -1, -1]
            else:
                args += [
                    -1 if window.limit is None else window.limit,
                    -1 if window.remaining is None else window.remaining,
                    -1 if window.reset_ms is None else window.reset_ms,
                ]
        self._observe(keys=[self.key], args=args)
        if daily is not None:
            self._low(daily)

    def _low(self, daily: Window) -> None:
        """Record a `budget_low` notification when less than `LOW_BUDGET` of the daily calls are left."""
        if self.conn is None or self.system_id is None or not daily.limit or daily.remaining is None:
            return
        if daily.remaining > daily.limit * LOW_BUDGET:
            return
        now = self.clock()
        if now - _told_at.get(self.key, -LOW_BUDGET_EVERY) < LOW_BUDGET_EVERY:
            return
        _told_at[self.key] = now
        reset = f" until {time.strftime('%H:%M', time.gmtime(daily.reset_ms / 1000))} UTC" if daily.reset_ms else ""
        notify.record(
            self.conn, "budget_low", f"Exact Online division {self.division} has used over "
            f"{100 - LOW_BUDGET * 100:.0f}% of its {daily.limit} daily API calls", system=self.system_id,
            fix=f"{daily.remaining} calls are left{reset}; when none are, syncs wait for the reset. Poll less often "
            "(poll_interval_seconds), or ask Exact for a higher limit",
        )  # fmt: skip

    def throttled(self, headers: Mapping[str, str], *, deadline: float | None = None) -> None:
        """Exact answered 429: mark the exhausted window until its reset so every worker waits.

        With limits switched off there is no shared state: wait out the reset here, within the bound.
        """
        now_ms = self._now_ms()
        minutely, daily = read_headers(headers)
        window, until = "minutely", None
        if daily is not None and daily.remaining == 0 and daily.reset_ms:
            window, until = "daily", daily.reset_ms
        if minutely is not None and minutely.remaining == 0 and minutely.reset_ms:
            window, until = "minutely", minutely.reset_ms
        if until is None or until <= now_ms:
            retry_after = _int({k.lower(): v for k, v in headers.items()}, "retry-after")
            until = now_ms + (retry_after * 1000 if retry_after is not None else MINUTE_MS)
        deadline = self.deadline() if deadline is None else deadline
        if not self.limits.enabled:
            self._wait((until - now_ms) / 1000, deadline, window)
            return
        self.observe(headers)
        self._block(keys=[self.key], args=[now_ms, "d" if window == "daily" else "m", until, self._ttl_ms()])

    def snapshot(self) -> dict[str, int | str]:
        """The shared state, decoded (for ops pages and tests)."""
        if self.conn is None:
            return {}
        raw = self.conn.hgetall(self.key)
        out: dict[str, int | str] = {}
        for k, v in raw.items():
            name = k.decode() if isinstance(k, bytes) else str(k)
            text = v.decode() if isinstance(v, bytes) else str(v)
            out[name] = int(text) if text.lstrip("-").isdigit() else text
        return out

    def reset(self) -> None:
        if self.conn is not None:
            self.conn.delete(self.key)
