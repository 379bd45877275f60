"""Shared test doubles for the Exact Online tests: clocks, OData response builders, and the sandbox
served over real HTTP with an authorised Koppel system (`start`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import redis

from connectors.exactonline.auth import OAuthApp, authorize_url, complete_authorization, sign_state
from connectors.exactonline.client import ExactClient
from connectors.exactonline.ratelimit import Limits
from connectors.exactonline.sandbox import ExactSandbox, create_sandbox
from tests.conftest import LiveServer, serve

START = 1_795_000_000.0 + 17.5  # some seconds into a minute, so windows do not start at our first call


class FakeClock:
    """A wall clock that only moves when someone sleeps (or the test advances it); thread-safe.

    Concurrent sleepers do not add up: a sleep of `s` moves the clock to at least `t + s`, where `t` is
    the time this thread last read — as real time would for threads waiting side by side.
    """

    def __init__(self, start: float = START) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()
        self._read = threading.local()

    def __call__(self) -> float:
        with self._lock:
            self._read.at = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            start = getattr(self._read, "at", self.now)
            self.slept.append(seconds)
            self.now = max(self.now, start + seconds)
            self._read.at = self.now
        time.sleep(0.001)  # let other threads run

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class ScaledClock:
    """Real time, sped up `speed` times: waits really pass (so requests in flight stay short next to a
    rate-limit window), but a minute of Exact's time takes 1/speed of a real minute.

    A pickled copy reads the same time in another process on this machine (the monotonic clock is
    system-wide), so worker processes and the sandbox can share one sped-up clock.
    """

    def __init__(self, speed: float = 600.0, start: float = START) -> None:
        self.speed = speed
        self.start = start
        self.origin = time.monotonic()

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self.origin) * self.speed

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds) / self.speed)


class ExactResponses:
    """Builders for Exact's OData bodies (the shapes PLATFORMS.md §4 documents)."""

    @staticmethod
    def page(results: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"results": results}
        if next_url:
            body["__next"] = next_url
        return {"d": body}

    @staticmethod
    def single(entity: dict[str, Any]) -> dict[str, Any]:
        return {"d": entity}

    @staticmethod
    def error(message: str, code: str = "") -> dict[str, Any]:
        return {"error": {"code": code, "message": {"lang": "", "value": message}}}

    @staticmethod
    def tokens(access: str = "acc-1", refresh: str = "ref-1", expires_in: str = "600") -> dict[str, str]:
        return {"access_token": access, "token_type": "bearer", "expires_in": expires_in, "refresh_token": refresh}

    @staticmethod
    def rate_headers(
        minute_remaining: int, minute_reset_ms: int, day_remaining: int | None = None, day_reset_ms: int | None = None,
        minute_limit: int = 60, day_limit: int = 5000,
    ) -> dict[str, str]:  # fmt: skip
        headers = {
            "X-RateLimit-Minutely-Limit": str(minute_limit),
            "X-RateLimit-Minutely-Remaining": str(minute_remaining),
            "X-RateLimit-Minutely-Reset": str(minute_reset_ms),
        }
        if day_remaining is not None:
            headers |= {
                "X-RateLimit-Limit": str(day_limit),
                "X-RateLimit-Remaining": str(day_remaining),
                "X-RateLimit-Reset": str(day_reset_ms),
            }
        return headers


SECRET = "state-signing-secret"
REDIRECT = "https://koppel.example/oauth/exact/callback"
SYSTEM = "exact-main"


@dataclass
class Env:
    live: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    app: OAuthApp
    conn: redis.Redis
    clock: FakeClock | ScaledClock

    def control(self, action: str, body: dict | None = None) -> dict:
        if body is None and action in ("state", "calls"):
            return self.http.get(f"{self.live.url}/sandbox/{action}").raise_for_status().json()
        return self.http.post(f"{self.live.url}/sandbox/{action}", json=body or {}).raise_for_status().json()

    def authorise(self, system: str = SYSTEM) -> str:
        state = sign_state(SECRET, system, clock=self.clock)
        consent = self.http.get(authorize_url(self.live.url, self.app.client_id, REDIRECT, state))
        assert consent.status_code == 302
        query = parse_qs(urlsplit(consent.headers["location"]).query)
        return complete_authorization(
            self.http,
            self.app,
            self.conn,
            secret=SECRET,
            state=query["state"][0],
            code=query["code"][0],
            clock=self.clock,
        )

    def client(self, limits: Limits | None = None) -> ExactClient:
        return ExactClient.for_system(
            self.http,
            self.conn,
            self.app,
            SYSTEM,
            limits=limits or Limits(max_wait=3600),
            clock=self.clock,
            sleep=self.clock.sleep,
            jitter=lambda: 0.5,
        )


@contextmanager
def start(rconn: redis.Redis, clock: FakeClock | ScaledClock | None = None, **config: object) -> Iterator[Env]:
    clock = clock or FakeClock()
    app = create_sandbox(clock=clock, redirect_uris=(REDIRECT,), **config)
    live = serve(app)
    try:
        with httpx.Client(timeout=10) as http:
            oauth = OAuthApp(live.url, "koppel-sandbox", "sandbox-secret", REDIRECT)
            yield Env(live, app.state.sandbox, http, oauth, rconn, clock)
    finally:
        live.stop()
