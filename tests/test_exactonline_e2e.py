"""The Exact connector end to end: the sandbox under uvicorn, one real Redis, and callers at once in
threads of this process and in spawned worker processes, each caller with its own ExactClient."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from connectors.exactonline.auth import OAuthApp, TokenStore
from connectors.exactonline.client import ExactClient
from connectors.exactonline.ratelimit import Limits
from connectors.exactonline.sandbox import connect_sandbox
from connectors.exactonline.sandbox.entities import VAT_CODES
from tests.exactonline_support import SYSTEM, Env, ScaledClock, start

pytestmark = pytest.mark.integration
WAIT = 90.0
"""Seconds any one wait in these tests may take before the test fails instead of hanging."""


@dataclass(frozen=True)
class Target:
    """What a caller in any process needs to build its own ExactClient (picklable)."""

    app: OAuthApp
    redis_url: str
    clock: ScaledClock
    limits: Limits = field(default_factory=Limits)

    def client(self, http: httpx.Client, conn: redis.Redis) -> ExactClient:
        return ExactClient.for_system(
            http, conn, self.app, SYSTEM, limits=self.limits, clock=self.clock, sleep=self.clock.sleep
        )


@dataclass
class Outcome:
    """One caller's result, and what its client counted."""

    caller: str
    result: Any = None
    error: str | None = None
    calls: int = 0
    refreshes: int = 0
    waited: float = 0.0


Job = Callable[[ExactClient, str], Any]


def _callers(target: Target, job: Job, prefix: str, count: int, barrier: Any) -> list[Outcome]:
    """`count` threads, one ExactClient each on this process's httpx.Client, starting `job` together."""
    outcomes = [Outcome(f"{prefix}-{n}") for n in range(count)]
    conn = redis.Redis.from_url(target.redis_url)
    with httpx.Client(timeout=10) as http:

        def call(outcome: Outcome) -> None:
            try:
                client = target.client(http, conn)
                barrier.wait(timeout=WAIT)
                outcome.result = job(client, outcome.caller)
            except Exception as exc:
                outcome.error = f"{type(exc).__name__}: {exc}"
                return
            outcome.calls, outcome.waited = client.calls, client.limiter.waited
            outcome.refreshes = getattr(client.auth, "refreshes", 0)

        threads = [threading.Thread(target=call, args=(o,)) for o in outcomes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=WAIT)
    conn.close()
    return outcomes


def _worker_process(target: Target, job: Job, prefix: str, count: int, barrier: Any, results: Any) -> None:
    try:
        results.put(_callers(target, job, prefix, count, barrier))
    except Exception as exc:
        results.put([Outcome(prefix, error=f"{type(exc).__name__}: {exc}")])


def run_everywhere(target: Target, job: Job, *, threads: int = 3, processes: int = 2, each: int = 2) -> list[Outcome]:
    """`job` in `threads` threads here and `each` threads in each of `processes` spawned processes, all
    released at once; every caller's outcome (a caller that never reported fails the test)."""
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(threads + processes * each)
    results = spawn.Queue()
    workers = [
        spawn.Process(target=_worker_process, args=(target, job, f"p{n}", each, barrier, results), daemon=True)
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = _callers(target, job, "main", threads, barrier)
        for _ in workers:
            outcomes += results.get(timeout=WAIT)
    except queue.Empty:
        pytest.fail("a worker process did not report back")
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    assert [o.error for o in outcomes if o.error] == []
    assert len(outcomes) == threads + processes * each
    return outcomes


def vat_codes_twice(client: ExactClient, caller: str) -> list[str]:
    return [v["Code"] for _ in range(2) for v in client.list_vat_codes()]


ACCOUNTS_EACH = 4


def create_accounts(client: ExactClient, caller: str) -> list[str]:
    return [client.create_account({"Name": f"{caller}/{n}"})["Name"] for n in range(ACCOUNTS_EACH)]


def connect(env: Env, redis_url: str, limits: Limits | None = None) -> Target:
    """Koppel's OAuth set-up against the sandbox; the first client caches the division for the others."""
    assert isinstance(env.clock, ScaledClock)  # the worker processes need the sandbox's clock
    connect_sandbox(env.http, env.app, env.conn, SYSTEM)
    target = Target(env.app, redis_url, env.clock, limits or Limits())
    target.client(env.http, env.conn)
    return target


def test_concurrent_workers_refresh_the_token_exactly_once(rconn, redis_url):
    with start(rconn, ScaledClock(speed=1, start=time.time())) as env:  # real time
        target = connect(env, redis_url)
        spent = TokenStore(rconn, SYSTEM).load()
        env.control("expire-tokens")  # every caller's first call now answers 401
        outcomes = run_everywhere(target, vat_codes_twice)
        oauth = env.control("state")["oauth"]
        token_calls = env.control("calls")["by_endpoint"]["POST oauth2/token"]
        stored = TokenStore(rconn, SYSTEM).load()
        live_grant = next(iter(env.sandbox.grants.values()))
    codes = sorted(code for code, _, _ in VAT_CODES) * 2
    assert all(sorted(o.result) == sorted(codes) for o in outcomes)
    met_401 = [o.caller for o in outcomes if o.calls == 3]  # a 401, then the retry with the new token
    assert met_401 and all(o.calls in (2, 3) for o in outcomes), met_401
    assert (oauth["refreshes"], token_calls, oauth["refused"]) == (1, 2, {})  # code + one refresh; no invalid_grant
    assert sum(o.refreshes for o in outcomes) == 1
    assert stored.refresh_token == live_grant.refresh_token != spent.refresh_token
    assert env.sandbox.spent_refresh_tokens == {spent.refresh_token}


def test_a_429_storm_is_absorbed_without_loss_or_duplicates(rconn, redis_url):
    # Exact's 60 s windows, kept by the sandbox and the clients' limiter alike, pass in a real second
    # on a sped-up clock that the worker processes share.
    clock = ScaledClock(speed=60, start=time.time())
    with start(rconn, clock, token_lifetime=86_400) as env:
        target = connect(env, redis_url, Limits(per_minute=60, max_wait=3600))
        env.control("ratelimit", {"per_minute": 5})  # Exact allows far fewer calls than Koppel was told
        outcomes = run_everywhere(target, create_accounts)
        names = [a["Name"] for a in env.control("state")["entities"]["1234567"]["crm/Accounts"]]
        calls = env.control("calls")
    wanted = [f"{o.caller}/{n}" for o in outcomes for n in range(ACCOUNTS_EACH)]
    assert all(o.result == [f"{o.caller}/{n}" for n in range(ACCOUNTS_EACH)] for o in outcomes)
    assert Counter(names) == Counter(wanted)  # every record exactly once
    throttled = sum(w["throttled"] for w in calls["windows"])
    posts = calls["by_endpoint"]["POST crm/Accounts"]
    assert posts == len(wanted) + throttled  # each 429 was sent again, nothing else
    assert 0 < throttled < len(wanted)  # a storm, then the clients kept to the limit Exact's headers taught
    assert sum(o.calls for o in outcomes) == posts
    assert sum(o.waited for o in outcomes) > 0  # the clients slept until Exact's reset
    assert max(w["accepted"] for w in calls["windows"]) <= 5
