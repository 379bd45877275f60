"""Business Central's webhook subscriptions managed by Koppel, end to end over real HTTP: the BC sandbox, the
real gateway receiver (which answers BC's handshake), `koppel endpoints sync`, and the worker's jobs run
in process — customers changed in BC arrive as notifications and reach the shop once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import tomlkit
from rq.serializers import JSONSerializer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connectors import registry
from connectors.businesscentral.sandbox import SandboxConfig
from connectors.businesscentral.sandbox import create_sandbox as bc_sandbox
from connectors.contract import Subscription
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox as wc_sandbox
from gateway import cli
from gateway.activity import Activity, ActivityLog
from gateway.app import create_app
from gateway.ingest import make_queue
from gateway.redisserver import free_port
from gateway.stack import LiveServer, serve
from workers import runtime
from workers.inbox import pump_for
from workers.subscriptions import check, plan
from workers.worker import KoppelWorker

pytestmark = pytest.mark.integration

BC_SECRET, HOOK_SECRET, KEY, SECRET = "bc-hooks-secret", "client-state-s3cret", "ck_bc", "cs_bc"
URL = "https://koppel.example/webhooks/bc-hooks"


# -- the plan: renewal and a subscription BC deleted ------------------------------------------------------


def test_a_subscription_expiring_soon_is_renewed_and_one_bc_deleted_is_recreated_as_lost():
    soon = datetime(2026, 1, 2, 12, tzinfo=UTC)
    current = [Subscription("a1", "customers", URL, "active", expires=soon),
               Subscription("b2", "items", URL, "active", expires=soon + timedelta(days=2))]  # fmt: skip
    result = plan("bc-hooks", "bc", URL, ["customers", "items", "salesOrders"], current, vanished={"salesOrders"},
                  due=lambda s: s.expires is not None and s.expires <= soon)  # fmt: skip
    assert [(a.kind, a.topic) for a in result.actions] == [("renew", "customers"), ("keep", "items"),
                                                             ("create", "salesOrders")]  # fmt: skip
    renew, _, create = result.actions
    assert not renew.lost and "2026-01-02 12:00 UTC" in renew.describe()
    assert create.lost and "bc deleted it" in create.reason


def test_a_secret_longer_than_bc_takes_as_client_state_is_refused_by_config_check():
    from gateway.config import Endpoint

    def endpoint(secret: str) -> Endpoint:
        return Endpoint.model_validate({"id": "bc-hooks", "kind": "businesscentral", "secret": "env:S"},
                                       context={"environ": {"S": secret}})  # fmt: skip

    check_endpoint = registry.get("businesscentral").check_endpoint
    assert check_endpoint is not None
    assert check_endpoint(endpoint("x" * 2048)) == []
    [problem] = check_endpoint(endpoint("x" * 2049))
    assert "at most 2048 characters" in problem and "xxx" not in problem


# -- end to end -------------------------------------------------------------------------------------


@dataclass
class Env:
    bc: LiveServer
    shop: LiveServer
    gateway: LiveServer
    http: httpx.Client
    conn: redis.Redis
    config_path: Path
    capsys: pytest.CaptureFixture[str]

    def control(self, action: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        response = self.http.request(method, f"{self.bc.url}/sandbox/{action}", json=body)
        return response.raise_for_status().json()

    def sync(self, *args: str) -> tuple[int, str, str]:
        code = cli.main(["endpoints", "sync", "--config", str(self.config_path), *args])
        out = self.capsys.readouterr()
        return code, out.out, out.err

    def subscriptions(self) -> list[dict[str, Any]]:
        return list(self.control("subscriptions", method="GET")["subscriptions"])

    def work(self) -> None:
        """Move what the receiver accepted onto the queue and run every job (fan-outs included)."""
        config = registry.load(self.config_path)
        rt = runtime.Runtime(config=config, connection=self.conn)
        runtime.install(rt)
        try:
            for _ in range(3):  # a collection's job queues the records' jobs
                pump_for(self.conn, config.gateway).drain(timeout=10)
                queue = make_queue(self.conn, config.gateway.queue)
                KoppelWorker([queue], connection=self.conn, serializer=JSONSerializer).work(burst=True)
        finally:
            rt.close()

    def activity(self) -> list[Activity]:
        return ActivityLog(self.conn).entries("bc-to-shop")

    def shop_customers(self) -> list[dict[str, Any]]:
        shop = WooCommerceClient(self.http, base_url=self.shop.url, consumer_key=KEY, consumer_secret=SECRET)
        return list(shop.customers(role="all"))


def write_config(path: Path, bc_url: str, shop_url: str, gateway_url: str) -> Path:
    sandbox = SandboxConfig()
    data: dict[str, Any] = {
        "gateway": {"public_url": gateway_url},
        "endpoints": [{"id": "bc-hooks", "kind": "businesscentral", "secret": "env:T_HOOK", "system": "bc"}],
        "systems": [
            {"id": "bc", "kind": "businesscentral", "base_url": bc_url, "credentials": {"client_secret": "env:T_BC"},
             "settings": {"tenant": sandbox.tenant, "client_id": sandbox.client_id, "company": "CRONUS NL",
                          "login_url": bc_url}},
            {"id": "shop", "kind": "woocommerce", "base_url": shop_url,
             "credentials": {"consumer_key": "env:T_KEY", "consumer_secret": "env:T_SECRET"}},
        ],
        "integrations": [{"id": "bc-to-shop", "source": "bc-hooks", "target": "shop", "flows": ["customers"]}],
    }  # fmt: skip
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path: Path, redis_url: str, rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Env]:  # fmt: skip
    for name, value in {"T_HOOK": HOOK_SECRET, "T_BC": BC_SECRET, "T_KEY": KEY, "T_SECRET": SECRET,
                        "REDIS_URL": redis_url}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    bc = serve(bc_sandbox(client_secret=BC_SECRET, batch_seconds=0, collection_threshold=2), name="bc sandbox")
    shop = serve(wc_sandbox(consumer_key=KEY, consumer_secret=SECRET), name="shop sandbox")
    port = free_port()
    path = write_config(tmp_path / "koppel.toml", bc.url, shop.url, f"http://127.0.0.1:{port}")
    gateway = serve(create_app(registry.load(path), redis_url), port=port, name="gateway")
    try:
        with httpx.Client(timeout=10) as http:
            yield Env(bc, shop, gateway, http, rconn, path, capsys)
    finally:
        gateway.stop()
        shop.stop()
        bc.stop()


def test_sync_creates_the_subscriptions_through_the_receivers_handshake_and_changes_arrive(env):
    code, out, _ = env.sync("--dry-run")
    assert code == 0 and out.count("would create a webhook for customers") == 1, out
    assert env.subscriptions() == []  # the dry run changed nothing

    code, out, err = env.sync("--json")
    assert code == 0, err
    report = json.loads(out)["endpoints"][0]
    [made] = env.subscriptions()
    assert made["notificationUrl"] == f"{env.gateway.url}/webhooks/bc-hooks"
    assert made["resource"].endswith("/customers") and "clientState" not in made
    handshakes = [d for d in env.control("deliveries", method="GET")["deliveries"] if d.get("handshake")]
    assert [d["success"] for d in handshakes] == [True]  # the real receiver echoed the token
    assert report["done"] == [f"created webhook {made['subscriptionId']} for customers → {made['notificationUrl']}"]
    assert HOOK_SECRET not in out and HOOK_SECRET not in str([e.fields() for e in env.activity()])
    assert [(e.topic, e.outcome) for e in env.activity()] == [("customers", "created")]

    ids = env.control("seed", {"entity": "customers", "records": [
        {"displayName": "Ada Lovelace", "email": "ada@example.com"}]})["ids"]  # fmt: skip
    [sent] = env.control("notify")["deliveries"]
    assert sent["success"] and sent["status_code"] == 202
    env.work()
    assert [c["email"] for c in env.shop_customers()] == ["ada@example.com"]
    [customer_id] = ids.values()
    done = [e for e in env.activity() if e.resource_id == customer_id]
    assert [(e.topic, e.outcome) for e in done] == [("customers.created", "created")]

    env.control("change", {"entity": "customers", "id": customer_id, "fields": {"displayName": "Ada King"}})
    [sent] = env.control("notify")["deliveries"]
    assert sent["changes"] == ["updated"]
    env.work()
    [customer] = env.shop_customers()
    assert "King" in json.dumps(customer), customer
    done = [e for e in env.activity() if e.resource_id == customer_id]
    assert [(e.topic, e.outcome) for e in done][-1] == ("customers.updated", "updated")

    code, out, _ = env.sync()
    assert code == 0 and "in sync: nothing to do" in out


def test_a_subscription_bc_deleted_is_recreated_and_the_missed_change_polled(env):
    assert env.sync()[0] == 0
    [first] = env.subscriptions()
    ids = env.control("seed", {"entity": "customers", "records": [{"displayName": "Grace", "email": "g@example.com"}]})
    env.control("subscriptions/drop", {"id": first["subscriptionId"]})  # BC deleted it: the change was not sent
    assert env.control("notify")["deliveries"] == []

    code, out, err = env.sync()
    assert code == 0, err
    assert "bc deleted it (after failed deliveries)" in out and "reconciliation poll queued" in out, out
    [again] = env.subscriptions()
    assert again["subscriptionId"] != first["subscriptionId"]
    env.work()  # the poll the sync started reads what the deleted subscription did not send
    assert [c["email"] for c in env.shop_customers()] == ["g@example.com"]
    [customer_id] = ids["ids"].values()
    assert [e.outcome for e in env.activity() if e.resource_id == customer_id] == ["created"]


def test_a_failed_delivery_makes_bc_delete_the_subscription(env):
    assert env.sync()[0] == 0
    before = env.subscriptions()
    env.control("subscriptions", {"notificationUrl": f"{env.gateway.url}/webhooks/bc-hooks", "entity": "items",
                                  "clientState": "not-the-secret"})  # fmt: skip
    env.control("seed/items", {"skus": ["X-1"]})
    [sent] = env.control("notify")["deliveries"]
    assert sent["status_code"] == 401 and not sent["success"]
    listed = env.control("subscriptions", method="GET")
    assert listed["subscriptions"] == before  # the customers subscription stays; the refused one is gone
    assert [d["status"] for d in listed["deleted"]] == [401]


def test_undelivered_notifications_are_retried_and_an_expired_subscription_is_gone(env):
    """No answer (or 408/429/5xx) keeps the subscription and its changes for the next batch."""
    closed = f"http://127.0.0.1:{free_port()}/webhooks/bc-hooks"
    env.control("subscriptions", {"notificationUrl": closed, "entity": "customers", "clientState": HOOK_SECRET})
    env.control("seed", {"entity": "customers", "records": [{"displayName": "Retry"}]})
    [sent] = env.control("notify")["deliveries"]
    assert not sent["success"] and sent["status_code"] is None
    listed = env.control("subscriptions", method="GET")
    assert len(listed["subscriptions"]) == 1 and listed["deleted"] == [] and listed["pending"] == 1
    env.control("clock", {"offset": 3 * 86400 + 1})
    assert env.subscriptions() == []


def test_renewal_before_expiry_goes_through_the_handshake_again(env, rconn):
    env.control("clock", {"offset": -2.5 * 86400})  # made two and a half days ago: it expires within a day
    assert env.sync()[0] == 0
    env.control("clock", {"offset": 0})
    [old] = env.subscriptions()
    code, out, _ = env.sync("--dry-run")
    assert code == 0 and f"would renew webhook {old['subscriptionId']} (customers): it expires " in out, out
    assert env.subscriptions() == [old]  # the dry run changed nothing
    rt = runtime.Runtime(config=registry.load(env.config_path), connection=rconn)
    runtime.install(rt)
    try:
        result = check("bc-hooks")
    finally:
        rt.close()
    [done] = result["done"]
    assert done.startswith(f"renewed webhook {old['subscriptionId']} (customers) until ")
    [renewed] = env.subscriptions()
    expires = datetime.fromisoformat(renewed["expirationDateTime"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) > timedelta(days=2, hours=23)
    handshakes = [d for d in env.control("deliveries", method="GET")["deliveries"] if d.get("handshake")]
    assert len(handshakes) == 2 and all(d["success"] for d in handshakes)
    assert not result["polls"]  # nothing was lost


def test_a_collection_notification_is_re_read_and_each_record_processed_once(env):
    assert env.sync()[0] == 0
    records = [{"displayName": f"C{n}", "email": f"c{n}@example.com"} for n in range(4)]
    ids = env.control("seed", {"entity": "customers", "records": records})["ids"]
    deliveries = env.control("notify")["deliveries"]
    assert [d["changes"] for d in deliveries] == [["collection"]]  # four changes > the threshold of two
    env.work()
    assert sorted(c["email"] for c in env.shop_customers()) == [f"c{n}@example.com" for n in range(4)]
    created = [e for e in env.activity() if e.resource_id in ids.values()]
    assert sorted(e.resource_id for e in created) == sorted(ids.values())
    assert {e.outcome for e in created} == {"created"}
    # The same records reached again by the reconciliation poll: each version runs once.
    from workers.pollers import poll

    rt = runtime.Runtime(config=registry.load(env.config_path), connection=env.conn)
    runtime.install(rt)
    try:
        poll("bc", "customers")
    finally:
        rt.close()
    env.work()
    again = [e for e in env.activity() if e.resource_id in ids.values() and e.outcome != "created"]
    assert sorted(e.resource_id for e in again) == sorted(ids.values())
    assert {(e.outcome, e.reason) for e in again} == {("skipped", "this version of the record was processed already")}
    assert len(env.shop_customers()) == 4


def test_the_sandbox_sends_a_batch_by_itself_after_its_window(redis_url):
    received: list[dict[str, Any]] = []

    async def capture(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return PlainTextResponse("", status_code=202)

    receiver = serve(Starlette(routes=[Route("/hook", capture, methods=["POST"])]), name="receiver")
    bc = serve(bc_sandbox(client_secret=BC_SECRET, batch_seconds=0.05), name="bc sandbox")
    try:
        with httpx.Client(timeout=20) as http:
            http.post(f"{bc.url}/sandbox/subscriptions", json={"notificationUrl": f"{receiver.url}/hook",
                      "entity": "items", "clientState": HOOK_SECRET}).raise_for_status()  # fmt: skip
            http.post(f"{bc.url}/sandbox/seed/items", json={"skus": ["A", "B"]}).raise_for_status()
            log = http.get(f"{bc.url}/sandbox/deliveries", params={"min": 1, "timeout": 15}).json()["deliveries"]
    finally:
        bc.stop()
        receiver.stop()
    assert [d["items"] for d in log] == [2] and log[0]["success"]
    [body] = received
    assert [(i["changeType"], i["clientState"]) for i in body["value"]] == [("created", HOOK_SECRET)] * 2
    assert all(i["resource"].startswith("api/v2.0/companies(") and "/items(" in i["resource"] for i in body["value"])


def test_renewing_a_subscription_that_expired_meanwhile_makes_it_again(env, rconn):
    from connectors.businesscentral.webhooks import BusinessCentralWebhooks

    config = registry.load(env.config_path)
    rt = runtime.Runtime(config=config, connection=rconn)
    try:
        hooks = BusinessCentralWebhooks(config.system("bc"), rt.context())
        url = f"{env.gateway.url}/webhooks/bc-hooks"
        made = hooks.create("customers", url, HOOK_SECRET, "")
        assert [s.id for s in hooks.current()] == [made.id] and hooks.vanished(url, hooks.current()) == set()
        env.control("clock", {"offset": 3 * 86400 + 1})  # expired
        assert hooks.vanished(url, hooks.current()) == {"customers"}
        env.control("clock", {"offset": 0})
        again = hooks.renew(made, HOOK_SECRET)
        assert again.id != made.id and again.topic == "customers" and again.url == url
        assert [s.id for s in hooks.current()] == [again.id] and hooks.vanished(url, hooks.current()) == set()
    finally:
        rt.close()
