"""Exact Online's webhook subscriptions managed by `koppel endpoints sync`, end to end over real HTTP: the Exact
sandbox (uvicorn), the real gateway receiver (which answers Exact's empty validation POST), real Redis, and
the worker's jobs run in process — a customer entered in Exact arrives signed, is accepted and reaches the
shop once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import tomlkit
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connectors import registry
from connectors.exactonline.auth import TokenStore
from connectors.exactonline.connector import exact_client
from connectors.exactonline.sandbox import create_sandbox as exact_sandbox
from connectors.exactonline.webhooks import WebhookSubscriptions
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox as wc_sandbox
from gateway import cli
from gateway.activity import Activity, ActivityLog
from gateway.app import create_app
from gateway.config import Config, System
from gateway.ingest import make_queue
from gateway.redisserver import free_port
from gateway.stack import LiveServer, serve
from tests import pairs_support as pairs
from workers import runtime
from workers.inbox import pump_for
from workers.subscriptions import check

pytestmark = pytest.mark.integration

HOOK_SECRET, KEY, SECRET = "exact-app-webhook-secret", "ck_ex", "cs_ex"
DIVISION = 1234567
ENDPOINT = "exact-hooks"


@dataclass
class Env:
    exact: LiveServer
    shop: LiveServer
    gateway: LiveServer
    other: LiveServer
    """Another program's callback (answers Exact's validation with 200)."""
    http: httpx.Client
    conn: redis.Redis
    config_path: Path
    capsys: pytest.CaptureFixture[str]

    @property
    def hook_url(self) -> str:
        return f"{self.gateway.url}/webhooks/{ENDPOINT}"

    def control(self, route: str, body: dict[str, Any] | None = None, method: str = "POST", **params: Any) -> Any:
        response = self.http.request(method, f"{self.exact.url}/sandbox/{route}", json=body, params=params or None)
        return response.raise_for_status().json()

    def subscriptions(self) -> list[dict[str, Any]]:
        return sorted(self.control("webhooks", method="GET")["subscriptions"], key=lambda s: s["Topic"])

    def subscribe(self, topic: str, url: str, description: str) -> str:
        """A subscription made through Exact's API (as another program, or an earlier Koppel, made it)."""
        config = registry.load(self.config_path)
        rt = runtime.Runtime(config=config, connection=self.conn)
        try:
            client = exact_client(_exact(config), rt.context())
            body = {"CallbackURL": url, "Topic": topic, "Description": description}
            return str(client.create(WebhookSubscriptions, body)["ID"])
        finally:
            rt.close()

    def unsubscribe(self, subscription_id: str) -> None:
        """A subscription deleted through Exact's API (by a person, or by Exact itself)."""
        config = registry.load(self.config_path)
        rt = runtime.Runtime(config=config, connection=self.conn)
        try:
            exact_client(_exact(config), rt.context()).delete(WebhookSubscriptions, subscription_id)
        finally:
            rt.close()

    def sync(self, *args: str) -> tuple[int, str, str]:
        code = cli.main(["endpoints", "sync", "--config", str(self.config_path), *args])
        out = self.capsys.readouterr()
        return code, out.out, out.err

    def work(self) -> None:
        """Move what the receiver accepted onto the queue and run every job queued (and those a poll queued),
        in process, as a worker would (an RQ worker's teardown waits on its pub/sub thread)."""
        config = registry.load(self.config_path)
        rt = runtime.Runtime(config=config, connection=self.conn)
        runtime.install(rt)
        queue = make_queue(self.conn, config.gateway.queue)
        try:
            for _ in range(3):
                pump_for(self.conn, config.gateway).drain(timeout=10)
                for job in [j for j in map(queue.fetch_job, queue.job_ids) if j is not None]:
                    queue.remove(job)
                    job.func(*job.args, **job.kwargs)
        finally:
            rt.close()

    def activity(self) -> list[Activity]:
        return ActivityLog(self.conn).entries("exact-to-shop")

    def shop_customers(self) -> list[dict[str, Any]]:
        shop = WooCommerceClient(self.http, base_url=self.shop.url, consumer_key=KEY, consumer_secret=SECRET)
        return list(shop.customers(role="all"))


def _exact(config: Config) -> System:
    system = config.system("exact")
    assert system is not None
    return system


def write_config(path: Path, exact_url: str, shop_url: str, gateway_url: str, **settings: Any) -> Path:
    data: dict[str, Any] = {
        "gateway": {"public_url": gateway_url},
        "endpoints": [{"id": ENDPOINT, "kind": "exactonline", "secret": "env:T_HOOK", "system": "exact"}],
        "systems": [
            pairs.exact_system(exact_url, **settings),
            {"id": "shop", "kind": "woocommerce", "base_url": shop_url,
             "credentials": {"consumer_key": "env:T_KEY", "consumer_secret": "env:T_SECRET"}},
        ],
        "integrations": [{"id": "exact-to-shop", "source": ENDPOINT, "target": "shop",
                          "flows": ["customers", "products"]}],
    }  # fmt: skip
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    return path


def _other_app() -> Starlette:
    async def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/{path:path}", ok, methods=["POST"])])


@pytest.fixture
def env(tmp_path: Path, redis_url: str, rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Env]:  # fmt: skip
    for name, value in (pairs.ENV | {"T_HOOK": HOOK_SECRET, "T_KEY": KEY, "T_SECRET": SECRET,
                                     "REDIS_URL": redis_url}).items():  # fmt: skip
        monkeypatch.setenv(name, value)
    exact = serve(exact_sandbox(redirect_uris=(pairs.REDIRECT,), rate_limits=False, webhook_secret=HOOK_SECRET),
                  name="exact sandbox")  # fmt: skip
    shop = serve(wc_sandbox(consumer_key=KEY, consumer_secret=SECRET), name="shop sandbox")
    other = serve(_other_app(), name="other software")
    port = free_port()
    path = write_config(tmp_path / "koppel.toml", exact.url, shop.url, f"http://127.0.0.1:{port}")
    gateway = serve(create_app(registry.load(path), redis_url), port=port, name="gateway")
    try:
        with httpx.Client(timeout=10) as http:
            pairs.authorise_exact(http, exact, rconn)
            yield Env(exact, shop, gateway, other, http, rconn, path, capsys)
    finally:
        gateway.stop()
        other.stop()
        shop.stop()
        exact.stop()


def test_sync_creates_then_repairs_and_deletes_only_koppels_subscriptions_and_a_change_arrives_signed(env):
    code, out, _ = env.sync("--dry-run")
    assert code == 0, out
    assert out.count("would create a webhook for ") == 2 and env.subscriptions() == []  # the dry run changed nothing

    code, out, err = env.sync("--json")
    assert code == 0, err
    [report] = json.loads(out)["endpoints"]
    made = env.subscriptions()
    assert [(s["Topic"], s["CallbackURL"], s["Description"]) for s in made] == [
        ("Accounts", env.hook_url, f"Koppel {ENDPOINT}: Accounts"),
        ("Items", env.hook_url, f"Koppel {ENDPOINT}: Items"),
    ]
    assert report["done"] == [f"created webhook {s['ID']} for {s['Topic']} → {env.hook_url}" for s in made]
    validations = [d for d in env.control("deliveries", method="GET")["deliveries"] if d["validation"]]
    assert [(d["delivery_url"], d["status_code"], d["success"]) for d in validations] == [(env.hook_url, 200, True)] * 2
    assert HOOK_SECRET not in out and HOOK_SECRET not in str([e.fields() for e in env.activity()])
    assert sorted((e.topic, e.outcome) for e in env.activity()) == [("Accounts", "created"), ("Items", "created")]

    code, out, _ = env.sync()
    assert code == 0 and "in sync: nothing to do" in out, out
    assert env.subscriptions() == made

    # Drift: Koppel's Accounts subscription now points elsewhere, an old one of Koppel's on a topic no flow
    # needs, and another program's subscription.
    accounts, items = made
    env.unsubscribe(accounts["ID"])
    drifted = env.subscribe("Accounts", f"{env.other.url}/old-koppel", f"Koppel {ENDPOINT}: Accounts")
    unneeded = env.subscribe("SalesOrders", env.hook_url, f"Koppel {ENDPOINT}: SalesOrders")
    foreign = env.subscribe("Contacts", f"{env.other.url}/erp", "ERP tool")
    code, out, err = env.sync()
    assert code == 0, err
    assert "1 other webhook(s) on exact left alone" in out
    assert f"repaired webhook {drifted} (Accounts): its delivery URL was {env.other.url}/old-koppel" in out
    assert f"deleted webhook {unneeded} (SalesOrders): no flow of this endpoint needs its topic" in out
    subs = env.subscriptions()
    assert [(s["Topic"], s["CallbackURL"], s["Description"]) for s in subs] == [
        ("Accounts", env.hook_url, f"Koppel {ENDPOINT}: Accounts"),
        ("Contacts", f"{env.other.url}/erp", "ERP tool"),  # other software's: left alone
        ("Items", env.hook_url, f"Koppel {ENDPOINT}: Items"),
    ]
    assert subs[0]["ID"] not in (drifted, accounts["ID"]) and subs[1]["ID"] == foreign and subs[2] == items
    assert "in sync: nothing to do" in env.sync()[1]

    ids = env.control("seed", {"entity": "crm/Accounts", "records": [
        {"Name": "Ada Lovelace", "Email": "ada@example.com", "Status": "C"}]})["ids"]  # fmt: skip
    [sent] = env.control("deliveries", method="GET", min=1, timeout=10, topic="Accounts", action="Create")["deliveries"]
    assert sent["success"] and sent["status_code"] == 200 and sent["delivery_url"] == env.hook_url
    env.work()
    assert [c["email"] for c in env.shop_customers()] == ["ada@example.com"]
    [account_id] = ids
    done = [e for e in env.activity() if e.resource_id == account_id]
    assert [(e.topic, e.outcome) for e in done] == [("Accounts.Create", "created")]


def test_a_topic_held_by_another_programs_subscription_is_named_and_the_rest_synced(env):
    env.subscribe("Items", f"{env.other.url}/erp", "ERP tool")
    code, _, err = env.sync()
    assert code == 1
    assert f"Items in division {DIVISION} is taken by subscription" in err and "'ERP tool'" in err, err
    assert "Traceback" not in err
    assert [(s["Topic"], s["Description"]) for s in env.subscriptions()] == [
        ("Accounts", f"Koppel {ENDPOINT}: Accounts"), ("Items", "ERP tool")]  # fmt: skip


def test_a_subscription_exact_dropped_is_made_again_by_the_workers_check_and_the_missed_change_polled(env):
    write_config(env.config_path, env.exact.url, env.shop.url, env.gateway.url, reconcile_interval_seconds=3600)
    assert env.sync()[0] == 0
    accounts = next(s for s in env.subscriptions() if s["Topic"] == "Accounts")
    env.unsubscribe(accounts["ID"])  # Exact dropped it (after failed deliveries, say): the change is told to nobody
    grace = {"Name": "Grace", "Email": "g@example.com", "Status": "C"}
    env.control("seed", {"entity": "crm/Accounts", "records": [grace]})

    rt = runtime.Runtime(config=registry.load(env.config_path), connection=env.conn)
    runtime.install(rt)
    try:
        result = check(ENDPOINT)
    finally:
        rt.close()
    [done] = result["done"]
    assert done.startswith("created webhook ") and "exact deleted it (after failed deliveries)" in done, done
    assert result["polls"], result  # the reconciliation poll fetches what was not told
    assert result["next_check"] is not None
    env.work()
    assert "g@example.com" in [c["email"] for c in env.shop_customers()]


def test_without_exacts_consent_the_sync_says_to_connect_and_changes_nothing(env):
    TokenStore(env.conn, "exact").delete()
    code, out, err = env.sync("--dry-run")
    assert code == 1 and out == ""
    assert "exact refused Koppel's keys" in err and "koppel connect exact" in err, err
    assert "Traceback" not in err and env.subscriptions() == []
