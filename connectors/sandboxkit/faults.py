"""Fault injection: the next API requests fail the way real APIs fail.

* An error status — a 429 storm, a 5xx — with an optional `Retry-After` (seconds); the sandbox renders
  it in its platform's error shape (`Faults.step(render)`).
* A slow answer: `delay` seconds before the real answer (or before the error, when a status is given).
* A dropped connection: the response starts and the connection closes before the body. Over the wire the
  client sees the peer close mid-response; through `httpx.ASGITransport` it gets `ConnectionDropped`, which
  is an `httpx.RemoteProtocolError` — the same transport error (uvicorn also logs the exception).

Faults queue in order. Each applies to the next `times` requests, or — a storm — to every request for
`seconds` on the sandbox's clock. Set them in process (`sandbox.faults.add(Fault(429, retry_after=2),
times=5)`) or with `POST /sandbox/fail {"status", "times", "seconds", "retry_after", "delay", "drop"}`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from connectors.sandboxkit.routing import Step, add_headers


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised by a sandbox that drops a connection on purpose, after the response started."""


class DroppedConnection(Response):
    """A response that starts (status and headers promising a body) and then drops the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")
        self.headers["content-length"] = "1024"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        raise ConnectionDropped("the sandbox dropped the connection (an injected fault)")


@dataclass(frozen=True)
class Fault:
    """One way to fail: `status` None with a `delay` is a slow real answer; `drop` answers nothing."""

    status: int | None = 503
    retry_after: int | None = None
    delay: float = 0.0
    drop: bool = False

    def __post_init__(self) -> None:
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP status")
        if self.status is None and not (self.delay or self.drop):
            raise ValueError("a fault without a status must be slow (delay) or drop the connection")
        if self.delay < 0 or (self.retry_after is not None and self.retry_after < 0):
            raise ValueError("delay and retry_after are seconds, not negative")

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Fault:
        """From a control request's fields; `status` defaults to 503, or to none for a `delay` or a `drop`."""
        drop = bool(fields.get("drop", False))
        delay = float(fields.get("delay") or 0)
        status = fields.get("status", None if drop or delay else 503)
        retry_after = fields.get("retry_after")
        return cls(
            status=None if status is None else int(status),
            retry_after=None if retry_after is None else int(float(retry_after)),
            delay=delay,
            drop=drop,
        )

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


@dataclass
class _Pending:
    fault: Fault
    times: int | None
    until: float | None


class Faults:
    """The faults waiting for the next requests, in order."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self._pending: deque[_Pending] = deque()

    def add(self, fault: Fault, *, times: int = 1, seconds: float | None = None) -> int:
        """Queue `fault` for the next `times` requests, or for every request during `seconds`; how many wait."""
        if seconds is not None:
            if seconds <= 0:
                raise ValueError("seconds must be positive")
            self._pending.append(_Pending(fault, None, self.clock() + seconds))
        else:
            if times < 1:
                raise ValueError("times must be at least 1")
            self._pending.append(_Pending(fault, times, None))
        return self.pending

    def add_fields(self, fields: Mapping[str, Any]) -> int:
        """`add` from a control request's fields (`Fault.from_fields` plus `times` and `seconds`)."""
        seconds = fields.get("seconds")
        return self.add(Fault.from_fields(fields), times=int(fields.get("times", 1)),
                        seconds=None if seconds is None else float(seconds))  # fmt: skip

    def take(self) -> Fault | None:
        """The fault for this request, if one is due."""
        now = self.clock()
        while self._pending:
            head = self._pending[0]
            if head.until is not None:
                if now < head.until:
                    return head.fault
                self._pending.popleft()
                continue
            assert head.times is not None
            head.times -= 1
            if head.times <= 0:
                self._pending.popleft()
            return head.fault
        return None

    @property
    def pending(self) -> int:
        """Requests still to fail (a storm counts once)."""
        now = self.clock()
        return sum(p.times if p.times is not None else int(p.until is not None and now < p.until)
                   for p in self._pending)  # fmt: skip

    def listing(self) -> list[dict[str, Any]]:
        return [asdict(p.fault) | {"times": p.times, "until": p.until} for p in self._pending]

    def clear(self) -> None:
        self._pending.clear()

    def step(self, render: Callable[[Fault], Response]) -> Step:
        """A pipeline step: the due fault, its error rendered by `render` (with its `Retry-After`)."""

        async def inject(request: Request) -> Response | None:
            fault = self.take()
            if fault is None:
                return None
            if fault.delay:
                await self.sleep(fault.delay)
            if fault.drop:
                return DroppedConnection()
            if fault.status is None:
                return None
            add_headers(request, fault.headers())
            return render(fault)

        return inject
