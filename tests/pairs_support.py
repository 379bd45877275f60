"""Shared pieces of the integration tests that drive two (or three) sandboxes through Koppel: the sandboxes
served over real HTTP (uvicorn), their `[[systems]]` entries, the runtime a worker installs, and a poll run
as the poller and worker run it (`run_polled`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import redis

from connectors.asperion.auth import OAuthApp as AsperionApp
from connectors.asperion.sandbox import connect_sandbox as connect_asperion
from connectors.asperion.sandbox import create_sandbox as asperion_sandbox
from connectors.businesscentral.sandbox import BusinessCentralSandbox, SandboxConfig
from connectors.businesscentral.sandbox import create_sandbox as bc_sandbox
from connectors.exactonline.auth import OAuthApp
from connectors.exactonline.sandbox import ExactSandbox, connect_sandbox
from connectors.exactonline.sandbox import create_sandbox as exact_sandbox
from connectors.winstore.sandbox import create_sandbox as winstore_sandbox
from connectors.winstore.sandbox.app import PREFIX
from gateway.config import Config, parse_config
from gateway.ingest import JOB_FUNC, make_queue
from gateway.stack import LiveServer, serve
from workers import runtime
from workers.inbox import pump_for
from workers.jobs import process_event
from workers.pollers import poll

REDIRECT = "https://koppel.example/oauth/exact/callback"
EXACT_CLIENT_ID, EXACT_CLIENT_SECRET = "koppel-sandbox", "sandbox-secret"
WS_USER, WS_PASSWORD = "koppel", "winstore-secret"
BC_SECRET = "bc-pairs-secret"
ASPERION_REDIRECT = "https://koppel.example/oauth/asperion/callback"
ASPERION_CLIENT_ID, ASPERION_SECRET = "koppel-sandbox", "asperion-sandbox-secret"  # the Asperion sandbox's app
ENV = {"EXACT_CLIENT_SECRET": EXACT_CLIENT_SECRET, "WS_USER": WS_USER, "WS_PASSWORD": WS_PASSWORD,
       "ASPERION_SECRET": ASPERION_SECRET, "BC_SECRET": BC_SECRET, "BC_HOOK_SECRET": "bc-hook-secret",
       "ADMIN_TOKEN": "pairs-admin-token"}  # fmt: skip
"""The environment the entries below read their secrets from."""
SINCE_ALWAYS = {"date": "2000-01-01T00:00:00+00:00"}
Urls = Callable[[str, str], Config]
"""A test's configuration from the two sandboxes' URLs."""


# -- running jobs as the worker does -----------------------------------------------------------------------


def run_jobs(conn: redis.Redis, rt: runtime.Runtime) -> list[dict[str, Any]]:
    """The inbox pumped into jobs, every queued `process_event` job taken off the queue and run; their summaries."""
    pump_for(conn, rt.config.gateway).drain(timeout=10)
    queue = make_queue(conn, rt.config.gateway.queue)
    jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
    events = [job for job in jobs if job is not None and job.func_name == JOB_FUNC]
    for job in events:
        queue.remove(job)
    return [process_event(job.args[0]) for job in events]


def run_polled(conn: redis.Redis, rt: runtime.Runtime, system: str, stream: str, integration: str | None = None,
               *, reached_only: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Poll `system`'s `stream` (the real poller job), then `run_jobs`: each event's summary, or with `integration`
    its result there (every event must reach it, unless `reached_only`: then events it did not see are left out)."""
    poll(system, stream)
    summaries = run_jobs(conn, rt)
    if integration is None:
        return summaries
    results = [s["integrations"] for s in summaries]
    return [r[integration] for r in results if not reached_only or integration in r]


@contextmanager
def installed(config: Config, conn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[runtime.Runtime]:
    """A runtime for `config`, installed as `koppel worker` installs it (jobs find it), closed afterwards."""
    rt = runtime.Runtime(config=config, connection=conn)
    monkeypatch.setattr(runtime, "_runtime", rt)
    try:
        yield rt
    finally:
        rt.close()


# -- configuration ---------------------------------------------------------------------------------------------


def pair_config(
    systems: list[dict[str, Any]], integrations: list[dict[str, Any]], endpoints: list[dict[str, Any]] | None = None
) -> Config:
    """A configuration of these systems, integrations (and webhook endpoints), its secrets read from ENV."""
    return parse_config({"gateway": {"admin_token": "env:ADMIN_TOKEN"},  # signs OAuth consents' state
                         "endpoints": endpoints or [], "systems": systems, "integrations": integrations},
                        environ=ENV)  # fmt: skip


def exact_system(url: str, **settings: Any) -> dict[str, Any]:
    """The Exact Online sandbox as system `exact` (authorise it with `authorise_exact`)."""
    return {"id": "exact", "kind": "exactonline", "base_url": url,
            "credentials": {"client_secret": "env:EXACT_CLIENT_SECRET"},
            "settings": {"client_id": EXACT_CLIENT_ID, "redirect_uri": REDIRECT} | settings}  # fmt: skip


def winstore_system(url: str, **settings: Any) -> dict[str, Any]:
    """The Winstore sandbox served at `url` as system `winstore` (no `settings` table when none are given)."""
    entry = {"id": "winstore", "kind": "winstore", "base_url": url + PREFIX,
             "credentials": {"username": "env:WS_USER", "password": "env:WS_PASSWORD"}}  # fmt: skip
    return entry | ({"settings": settings} if settings else {})


def asperion_system(url: str, **settings: Any) -> dict[str, Any]:
    """The Asperion sandbox (its identity server too, tenant 1001) as system `asperion` (`authorise_asperion`)."""
    return {"id": "asperion", "kind": "asperion", "base_url": url,
            "credentials": {"client_secret": "env:ASPERION_SECRET"},
            "settings": {"client_id": ASPERION_CLIENT_ID, "tenant_id": "1001", "identity_url": url,
                         "redirect_uri": ASPERION_REDIRECT} | settings}  # fmt: skip


def bc_system(url: str, **settings: Any) -> dict[str, Any]:
    """The Business Central sandbox (default tenant and app, company CRONUS NL) as system `bc`."""
    sandbox = SandboxConfig()
    return {"id": "bc", "kind": "businesscentral", "base_url": url, "credentials": {"client_secret": "env:BC_SECRET"},
            "settings": {"tenant": sandbox.tenant, "client_id": sandbox.client_id, "company": "CRONUS NL",
                         "login_url": url} | settings}  # fmt: skip


# -- the sandboxes, served -----------------------------------------------------------------------------------


@contextmanager
def exact_served() -> Iterator[tuple[LiveServer, ExactSandbox]]:
    """The Exact Online sandbox (no rate limits) over HTTP, and its state."""
    app = exact_sandbox(redirect_uris=(REDIRECT,), rate_limits=False)
    live = serve(app, name="Exact Online sandbox")
    try:
        yield live, app.state.sandbox
    finally:
        live.stop()


def authorise_exact(http: httpx.Client, live: LiveServer, conn: redis.Redis, system: str = "exact") -> None:
    """Koppel's system `system` authorised on the Exact sandbox (the OAuth consent, as an admin gives it)."""
    connect_sandbox(http, OAuthApp(live.url, EXACT_CLIENT_ID, EXACT_CLIENT_SECRET, REDIRECT), conn, system)


@contextmanager
def asperion_served() -> Iterator[LiveServer]:
    """The Asperion sandbox (API and identity server) over HTTP."""
    live = serve(asperion_sandbox(), name="Asperion sandbox")
    try:
        yield live
    finally:
        live.stop()


def authorise_asperion(http: httpx.Client, live: LiveServer, conn: redis.Redis, system: str = "asperion") -> None:
    """Koppel's system `system` authorised on the Asperion sandbox (the OAuth consent, as an admin gives it)."""
    connect_asperion(http, AsperionApp(live.url, ASPERION_CLIENT_ID, ASPERION_SECRET, ASPERION_REDIRECT), conn, system)


@contextmanager
def winstore_served(articles: Sequence[dict[str, Any]] = ()) -> Iterator[LiveServer]:
    """The Winstore sandbox over HTTP, holding `articles` (sandbox article records, `stock` per warehouse)."""
    live = serve(winstore_sandbox(username=WS_USER, password=WS_PASSWORD), name="Winstore sandbox")
    try:
        if articles:
            with httpx.Client(timeout=10) as http:
                http.post(f"{live.url}/sandbox/articles", json={"articles": list(articles)}).raise_for_status()
        yield live
    finally:
        live.stop()


@contextmanager
def bc_served(**config: Any) -> Iterator[tuple[LiveServer, BusinessCentralSandbox]]:
    """The Business Central sandbox (accepting BC_SECRET; `config` sets SandboxConfig fields) over HTTP, its state."""
    app = bc_sandbox(client_secret=BC_SECRET, **config)
    live = serve(app, name="Business Central sandbox")
    try:
        yield live, app.state.sandbox
    finally:
        live.stop()


def winstore_article_keys(http: httpx.Client, live: LiveServer) -> dict[str, str]:
    """{ArtNr: ArtKey} of every article in the Winstore sandbox, read through its API."""
    auth = (WS_USER, WS_PASSWORD)
    answer = http.get(f"{live.url}{PREFIX}/GetArticleDataChangesByDate", params=SINCE_ALWAYS, auth=auth)
    return {a["ArtNr"]: str(a["ArtKey"]) for a in answer.raise_for_status().json()}


# -- what a pair test holds ----------------------------------------------------------------------------------


@dataclass
class ExactWinstore:
    """The served Exact and Winstore sandboxes (with Exact's state), an HTTP client, Redis and the runtime."""

    exact: LiveServer
    winstore: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime


@dataclass
class BCWinstore:
    """The served Business Central and Winstore sandboxes (with BC's state), an HTTP client, Redis and the runtime."""

    bc: LiveServer
    winstore: LiveServer
    sandbox: BusinessCentralSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime


EW = TypeVar("EW", bound=ExactWinstore)
BW = TypeVar("BW", bound=BCWinstore)
P = TypeVar("P", bound=ExactWinstore | BCWinstore)


@contextmanager
def _pair(env: type[P], first: AbstractContextManager[tuple[LiveServer, Any]], config: Urls, conn: redis.Redis,
          monkeypatch: pytest.MonkeyPatch, articles: Sequence[dict[str, Any]]) -> Iterator[P]:  # fmt: skip
    with (
        first as (live, sandbox),
        winstore_served(articles) as winstore,
        httpx.Client(timeout=10) as http,
        installed(config(live.url, winstore.url), conn, monkeypatch) as rt,
    ):
        yield env(live, winstore, sandbox, http, conn, rt)


@contextmanager
def exact_and_winstore(env: type[EW], config: Urls, conn: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                       articles: Sequence[dict[str, Any]] = ()) -> Iterator[EW]:  # fmt: skip
    """Both sandboxes served (Winstore holding `articles`), Koppel's runtime installed and authorised on Exact."""
    with _pair(env, exact_served(), config, conn, monkeypatch, articles) as pair:
        authorise_exact(pair.http, pair.exact, conn)
        yield pair


@contextmanager
def bc_and_winstore(env: type[BW], config: Urls, conn: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                    articles: Sequence[dict[str, Any]] = ()) -> Iterator[BW]:  # fmt: skip
    """Both sandboxes served (Winstore holding `articles`) and Koppel's runtime installed."""
    with _pair(env, bc_served(), config, conn, monkeypatch, articles) as pair:
        yield pair


@dataclass
class ExactAsperion:
    """The served Exact and Asperion sandboxes (with Exact's state), an HTTP client, Redis and the runtime."""

    exact: LiveServer
    asperion: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime

    def exact_control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.post(f"{self.exact.url}/sandbox/{action}", json=body).raise_for_status().json()

    def asperion_control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.post(f"{self.asperion.url}/sandbox/{action}", json=body).raise_for_status().json()

    def records(self, resource: str) -> list[dict[str, Any]]:
        """What the Asperion sandbox holds of `resource` (articles, relations, salesorders…)."""
        answer = self.http.get(f"{self.asperion.url}/sandbox/records", params={"resource": resource})
        return list(answer.raise_for_status().json()["records"])

    def articles(self) -> dict[str, dict[str, Any]]:
        return {a["code"]: a for a in self.records("articles")}

    def process_polled(self, system: str, stream: str, integration: str) -> list[dict[str, Any]]:
        """Poll a stream (the real poller job), then run every queued job: each event's result for `integration`."""
        return run_polled(self.conn, self.rt, system, stream, integration)


EA = TypeVar("EA", bound=ExactAsperion)


@contextmanager
def exact_and_asperion(env: type[EA], config: Urls, conn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[EA]:
    """Both sandboxes served, Koppel's runtime installed and authorised on both (two OAuth consents)."""
    with (
        exact_served() as (exact, sandbox),
        asperion_served() as asperion,
        httpx.Client(timeout=10) as http,
        installed(config(exact.url, asperion.url), conn, monkeypatch) as rt,
    ):
        authorise_exact(http, exact, conn)
        authorise_asperion(http, asperion, conn)
        yield env(exact, asperion, sandbox, http, conn, rt)
