"""`koppel endpoints sync`: the shop's webhooks created, repaired and re-activated, and what the webhooks
lost while disabled fetched by the reconciliation poll — every order booked in Exact exactly once."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomlkit
from rq import Queue

from connectors.contract import Subscription
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox
from connectors.woocommerce.wordpress import php_json_encode, webhook_signature
from gateway import cli
from gateway.activity import ActivityLog
from gateway.config import parse_config
from gateway.ingest import make_queue
from gateway.stack import ENDPOINT, Stack, StackOptions, serve
from workers import runtime
from workers.pollers import poll_now
from workers.subscriptions import check, check_job_ids, plan, schedule_checks

URL = "https://koppel.example/webhooks/shop"
TOPICS = ["order.created", "order.updated"]


def sub(ident: int, topic: str, url: str = URL, status: str = "active", name: str = "") -> Subscription:
    return Subscription(str(ident), topic, url, status, name or f"Koppel shop: {topic}")


def kinds(result: Any) -> list[tuple[str, str, str | None]]:
    return [(a.kind, a.topic, a.subscription.id if a.subscription else None) for a in result.actions]


# -- the plan ----------------------------------------------------------------------------------------


def test_missing_webhooks_are_created_and_present_ones_kept():
    result = plan("shop", "wc", URL, TOPICS, [sub(1, "order.created")])
    assert kinds(result) == [("keep", "order.created", "1"), ("create", "order.updated", None)]
    assert not result.in_sync


def test_a_wrong_delivery_url_is_repaired_and_counts_as_lost_deliveries():
    result = plan("shop", "wc", URL, TOPICS, [sub(1, "order.created", url="https://old.example/webhooks/shop"),
                                              sub(2, "order.updated")])  # fmt: skip
    assert kinds(result) == [("update", "order.created", "1"), ("keep", "order.updated", "2")]
    assert result.actions[0].lost and "https://old.example" in result.actions[0].reason


def test_a_disabled_webhook_is_re_activated_and_a_paused_one_reported_not_touched():
    result = plan("shop", "wc", URL, TOPICS, [sub(1, "order.created", status="disabled"),
                                              sub(2, "order.updated", status="paused")])  # fmt: skip
    assert kinds(result) == [("enable", "order.created", "1"), ("paused", "order.updated", "2")]
    assert result.actions[0].lost and "disabled" in result.actions[0].describe()
    assert [a.kind for a in result.changes] == ["enable"]


def test_duplicates_are_deleted_keeping_the_active_one_on_the_right_url():
    current = [sub(5, "order.created", status="disabled"), sub(7, "order.created"), sub(9, "order.updated"),
               sub(3, "order.created", url="https://old.example/x")]  # fmt: skip
    result = plan("shop", "wc", URL, TOPICS, current)
    expected = [("delete", "order.created", "5"), ("delete", "order.created", "3"), ("keep", "order.created", "7"),
                ("keep", "order.updated", "9")]  # fmt: skip
    assert sorted(kinds(result)) == sorted(expected)


def test_a_wrong_topic_is_repaired_on_the_same_webhook_and_unneeded_ones_deleted():
    current = [sub(1, "product.updated"), sub(2, "customer.created"), sub(3, "order.updated")]
    result = plan("shop", "wc", URL, TOPICS, current)
    assert kinds(result) == [("update", "order.created", "1"), ("keep", "order.updated", "3"),
                             ("delete", "customer.created", "2")]  # fmt: skip
    assert result.actions[0].reason == "its topic was product.updated"


def test_webhooks_that_are_not_this_endpoints_are_left_alone():
    current = [
        Subscription("1", "order.created", "https://erp.example/hook", "disabled", "Other plugin"),
        Subscription("2", "order.created", "https://other.example/webhooks/b", "active", "Koppel other: order.created"),
        Subscription("3", "order.created", "https://moved.example/hooks/shop", "active", "Koppel shop: order.created"),
        Subscription("4", "order.updated", URL, "active", "made by hand"),
    ]  # fmt: skip
    result = plan("shop", "wc", URL, TOPICS, current)
    assert kinds(result) == [("update", "order.created", "3"), ("keep", "order.updated", "4")]
    assert result.others == 2


def test_in_sync_means_no_change():
    result = plan("shop", "wc", URL, TOPICS, [sub(1, "order.created"), sub(2, "order.updated")])
    assert result.in_sync and [a.kind for a in result.actions] == ["keep", "keep"]


# -- the command against the sandbox (in process) ------------------------------------------------------

KEY, SECRET, HOOK_SECRET = "ck_sync", "cs_sync", "wh-s3cret&lt;7"


@pytest.fixture
def shop() -> Iterator[tuple[Any, WooCommerceClient, Any]]:
    app = create_sandbox(consumer_key=KEY, consumer_secret=SECRET, seed_products=True)
    live = serve(app)
    try:
        with httpx.Client(timeout=10) as http:
            yield live, WooCommerceClient(http, base_url=live.url, consumer_key=KEY, consumer_secret=SECRET), app
    finally:
        live.stop()


def write_config(path: Path, shop_url: str, *, flows: list[str], public_url: str | None = "http://127.0.0.1:9/",
                 secret: str = SECRET, check_seconds: int = 900) -> Path:  # fmt: skip
    data: dict[str, Any] = {
        "gateway": {"public_url": public_url} if public_url else {},
        "endpoints": [{"id": "shop-hooks", "kind": "woocommerce", "secret": "env:T_HOOK", "system": "shop"}],
        "systems": [
            {"id": "shop", "kind": "woocommerce", "base_url": shop_url,
             "credentials": {"consumer_key": "env:T_KEY", "consumer_secret": "env:T_SECRET"},
             "settings": {"webhook_check_seconds": check_seconds}},
            {"id": "other", "kind": "woocommerce", "base_url": shop_url,
             "credentials": {"consumer_key": "env:T_KEY", "consumer_secret": "env:T_SECRET"}},
        ],
        "integrations": [{"id": "hooks-to-other", "source": "shop-hooks", "target": "other", "flows": flows}],
    }  # fmt: skip
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    for name, value in {"T_HOOK": HOOK_SECRET, "T_KEY": KEY, "T_SECRET": SECRET, "REDIS_URL": redis_url}.items():
        monkeypatch.setenv(name, value)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["endpoints", "sync", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.integration
def test_sync_creates_the_topics_of_every_flow_signed_with_the_endpoints_secret(shop, env, tmp_path, capsys, rconn):
    live, client, app = shop
    config = write_config(tmp_path / "k.toml", live.url, flows=["orders", "products", "customers"])
    client.create_webhook(topic="order.created", delivery_url="https://erp.example/in", secret="x", name="ERP")

    code, out, _ = run(capsys, "--config", str(config), "--dry-run")
    assert code == 0 and out.count("would create a webhook for") == 6
    assert len(list(client.webhooks())) == 1  # the dry run changed nothing

    code, out, _ = run(capsys, "--config", str(config), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["endpoints"][0]["others"] == 1 and len(report["endpoints"][0]["done"]) == 6
    hooks = {h["topic"]: h for h in client.webhooks() if h["name"].startswith("Koppel")}
    assert sorted(hooks) == ["customer.created", "customer.updated", "order.created", "order.updated",
                             "product.created", "product.updated"]  # fmt: skip
    assert {h["delivery_url"] for h in hooks.values()} == {"http://127.0.0.1:9/webhooks/shop-hooks"}
    assert {h["status"] for h in hooks.values()} == {"active"}
    stored = app.state.sandbox.store.webhooks
    assert {stored[h["id"]]["secret"] for h in hooks.values()} == {HOOK_SECRET}  # verbatim, as configured
    assert next(h for h in client.webhooks() if h["name"] == "ERP")["delivery_url"] == "https://erp.example/in"
    created = ActivityLog(rconn).entries("hooks-to-other")
    assert sorted(e.topic for e in created) == sorted(hooks) and {e.outcome for e in created} == {"created"}
    assert all(HOOK_SECRET not in str(e.fields()) for e in created)

    code, out, _ = run(capsys, "--config", str(config))
    assert code == 0 and "in sync: nothing to do" in out
    assert len(ActivityLog(rconn).entries("hooks-to-other")) == len(created)


@pytest.mark.integration
def test_a_read_only_key_is_a_clear_failure_naming_the_fix(env, tmp_path, capsys):
    live = serve(create_sandbox(consumer_key=KEY, consumer_secret=SECRET, permissions="read"))
    try:
        config = write_config(tmp_path / "k.toml", live.url, flows=["orders"])
        code, out, _ = run(capsys, "--config", str(config), "--dry-run")
        assert code == 0 and "would create a webhook for order.created" in out  # reading is allowed
        code, _, err = run(capsys, "--config", str(config))
        assert code == 1
        assert "refused Koppel's keys" in err and "Read/Write permission" in err and "Traceback" not in err
        assert SECRET not in err and HOOK_SECRET not in err
    finally:
        live.stop()


@pytest.mark.integration
def test_an_unreachable_shop_and_a_missing_public_url_are_clear_failures(env, tmp_path, capsys):
    from gateway.redisserver import free_port

    config = write_config(tmp_path / "k.toml", f"http://127.0.0.1:{free_port()}", flows=["orders"])
    code, _, err = run(capsys, "--config", str(config), "--dry-run")
    assert code == 1 and "could not be reached at http://127.0.0.1:" in err and "Traceback" not in err
    assert "check systems.shop.base_url and that the shop answers" in err
    config = write_config(tmp_path / "k.toml", "http://127.0.0.1:1", flows=["orders"], public_url=None)
    code, _, err = run(capsys, "--config", str(config))
    assert code == 2 and "gateway.public_url: required" in err


def test_public_url_is_validated():
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config({"gateway": {"public_url": "koppel.example/hooks?x=1"}})
    assert "gateway.public_url" in str(caught.value)
    config = parse_config({"gateway": {"public_url": "https://koppel.example/base/"}})
    assert config.gateway.webhook_url("shop") == "https://koppel.example/base/webhooks/shop"


@pytest.mark.integration
def test_the_workers_check_is_scheduled_once_and_repairs_drift(shop, env, tmp_path, rconn, monkeypatch):
    live, client, _ = shop
    from connectors import registry

    config = registry.load(write_config(tmp_path / "k.toml", live.url, flows=["orders"], check_seconds=600))
    queue: Queue = make_queue(rconn, config.gateway.queue)
    assert schedule_checks(rconn, config) == [check_job_ids("shop-hooks")[0]]
    assert schedule_checks(rconn, config) == []  # a second worker starting: nothing more
    assert queue.scheduled_job_registry.get_job_ids() == [check_job_ids("shop-hooks")[0]]

    client.create_webhook(topic="order.created", delivery_url="https://gone.example/webhooks/shop-hooks", secret="s",
                          name="Koppel shop-hooks: order.created")  # fmt: skip
    rt = runtime.Runtime(config=config, connection=rconn)
    runtime.install(rt)
    try:
        result = check("shop-hooks")
    finally:
        rt.close()
    repaired, created = result["done"]
    assert repaired.startswith("repaired webhook 1 (order.created): its delivery URL was https://gone.example")
    assert created.startswith("created webhook 2 for order.updated")
    assert {h["delivery_url"] for h in client.webhooks()} == {"http://127.0.0.1:9/webhooks/shop-hooks"}
    assert result["next_check"] is None  # slot a is still scheduled


# -- end to end: both sandboxes, gateway and worker, over real HTTP --------------------------------------


def exact_refs(stack: Stack) -> Counter[str]:
    state = stack.exact_state()
    orders = state["entities"][str(state["divisions"][0])]["salesorder/SalesOrders"]
    return Counter(str(o["YourRef"]) for o in orders)


def wait_for(what: str, check_: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check_():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from gateway.redisserver import EmbeddedRedis, free_port

    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("sync-redis"), port=free_port())
    server.start()
    try:
        options = StackOptions(data_dir=tmp_path_factory.mktemp("sync"), redis_url=server.url, public_url=True,
                               create_webhooks=False, exact_rate_limits=False,
                               gateway={"worker_heartbeat_seconds": 1, "retry_base_seconds": 1},
                               shop_settings={"reconcile_interval_seconds": 3600})  # fmt: skip
        with Stack(options) as running:
            yield running
    finally:
        server.stop()


@pytest.mark.integration
def test_a_disabled_webhook_is_re_activated_and_the_missed_orders_booked_exactly_once(stack):
    shop = stack.woo_client()
    first = stack.cli("endpoints", "sync")
    assert first.returncode == 0, first.stderr
    hooks = list(shop.webhooks())
    assert sorted(h["topic"] for h in hooks) == TOPICS and {h["status"] for h in hooks} == {"active"}

    before = stack.place_orders(3, seed=11)
    stack.settle(before, timeout=60)
    for hook in hooks:  # what WooCommerce does after the 7th failed delivery in a row
        shop.update_webhook(hook["id"], {"status": "disabled"})
    delivered = len(stack.deliveries())
    missed = stack.place_orders(5, seed=12)
    assert len(stack.deliveries()) == delivered  # a disabled webhook sends nothing
    assert not any(ref in exact_refs(stack) for ref in missed)

    dry = stack.cli("endpoints", "sync", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would re-activate webhook") == 2, dry.stdout
    assert {h["status"] for h in shop.webhooks()} == {"disabled"}  # the dry run changed nothing

    repair = stack.cli("endpoints", "sync")
    assert repair.returncode == 0, repair.stderr
    assert repair.stdout.count("re-activated webhook") == 2 and "reconciliation poll queued" in repair.stdout
    assert {h["status"] for h in shop.webhooks()} == {"active"}

    outcomes = stack.settle(missed, timeout=90)
    assert {o.outcome for o in outcomes.values()} == {"created"}, outcomes
    wait_for("the pipeline to be idle", stack.idle)
    refs = exact_refs(stack)
    assert {ref: refs[ref] for ref in before + missed} == dict.fromkeys(before + missed, 1)

    log = stack.activity()
    reactivations = [e for e in log if e.reason.startswith("re-activated webhook")]
    assert sorted(e.topic for e in reactivations) == TOPICS
    assert all(e.resource_id.startswith("webhook ") for e in reactivations)
    assert stack.env["KOPPEL_STACK_WC_SECRET"] not in str([e.fields() for e in log])

    # The poll also read the orders the webhooks had brought: each was processed once, its poll copy skipped.
    polled = [e for e in log if e.topic == "order.sync" and e.resource_id in before]
    assert sorted(e.resource_id for e in polled) == sorted(before)
    assert {(e.outcome, e.reason) for e in polled} == {("skipped", "this version of the record was processed already")}

    again = stack.cli("endpoints", "sync")
    assert again.returncode == 0 and "in sync: nothing to do" in again.stdout
    assert [e for e in stack.activity() if e.resource_id.startswith("webhook ")] == [
        e for e in log if e.resource_id.startswith("webhook ")
    ]


@pytest.mark.integration
def test_an_order_delivered_by_poll_and_then_by_webhook_is_processed_once(stack):
    """The poll comes first here: the webhook's copy of the same state is the one skipped."""
    shop = stack.woo_client()
    hooks = list(shop.webhooks())
    for hook in hooks:
        shop.update_webhook(hook["id"], {"status": "paused"})
    try:
        [order] = stack.place_orders(1, seed=13)
    finally:
        for hook in hooks:
            shop.update_webhook(hook["id"], {"status": "active"})
    since = time.time() - 1
    assert poll_now(stack.connection, stack.config(), "shop")
    wait_for("the poll's event", lambda: any(e.resource_id == order for e in stack.activity(since)))
    # Now the same state arrives by webhook, as WooCommerce would send it: signed with the endpoint's secret.
    body = php_json_encode(shop.get_order(int(order)))
    headers = {"Content-Type": "application/json", "X-WC-Webhook-Topic": "order.updated",
               "X-WC-Webhook-Resource": "order", "X-WC-Webhook-Event": "updated",
               "X-WC-Webhook-ID": str(hooks[0]["id"]),
               "X-WC-Webhook-Signature": webhook_signature(body, stack.env["KOPPEL_STACK_WC_SECRET"])}  # fmt: skip
    response = stack.http.post(f"{stack.gateway_url}/webhooks/{ENDPOINT}", content=body, headers=headers)
    assert response.status_code == 202, response.text
    wait_for("the webhook's event", lambda: len([e for e in stack.activity(since) if e.resource_id == order]) == 2)
    wait_for("the pipeline to be idle", stack.idle)
    events = [(e.topic, e.outcome, e.reason) for e in stack.activity(since) if e.resource_id == order]
    assert events[0][:2] == ("order.sync", "created")
    assert events[1] == ("order.updated", "skipped", "this version of the record was processed already")
    assert exact_refs(stack)[order] == 1
