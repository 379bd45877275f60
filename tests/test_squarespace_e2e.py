"""Squarespace → Exact Online end to end, over real HTTP: the Squarespace sandbox, Koppel's receiver
(gateway/app.py), the Exact sandbox, real Redis and the generic orders flow.

A checkout in the sandbox sends a signed, thin notification (the order id only) to the subscription Koppel
made (`koppel endpoints sync`: workers/subscriptions.py); the receiver verifies it with the secret
Squarespace issued, the worker reads the full order (`Source.read`) and books it in Exact. A lost
notification is repaired by the reconciliation poll, a rotated secret loses nothing, and
`extension.uninstall` switches the integration off. (What the order looks like in Exact — net amounts, VAT,
discounts, document types, customers — is tests/test_squarespace_to_exact.py's: here it is booked once, under
its Squarespace number, with the default mapping.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from connectors.contract import Context
from connectors.squarespace.connector import SquarespaceWebhooks
from connectors.squarespace.sandbox import create_sandbox as squarespace_sandbox
from gateway.activity import ActivityLog
from gateway.app import create_app
from gateway.config import Config, parse_config
from gateway.redisserver import free_port
from gateway.stack import LiveServer, serve
from tests import pairs_support as pairs
from workers import runtime
from workers.pollers import poll, polled_streams
from workers.subscriptions import check, managed_endpoints, sync_endpoint
from workers.switches import switch_on, switched_off

pytestmark = pytest.mark.integration

TOKEN = "sq_oauth_token"
SKUS = ["SQ-MOK-1", "SQ-THEE-2"]
ENV = pairs.ENV | {"SQ_TOKEN": TOKEN, "SQ_HOOK": "00" * 32}


def make_config(sq_url: str, exact_url: str, gateway_url: str) -> Config:
    return parse_config(
        {
            "gateway": {"public_url": gateway_url, "queue": "koppel-sq"},
            "endpoints": [{"id": "sq-hooks", "kind": "squarespace", "secret": "env:SQ_HOOK", "system": "sq"}],
            "systems": [
                {"id": "sq", "kind": "squarespace", "base_url": sq_url, "credentials": {"api_key": "env:SQ_TOKEN"},
                 "settings": {"initial_lookback_seconds": 3600}},
                pairs.exact_system(exact_url),
            ],
            "integrations": [{"id": "sq-to-exact", "source": "sq-hooks", "target": "exact", "flows": ["orders"]}],
        },
        environ=ENV,
    )  # fmt: skip


@dataclass
class Env:
    sq: LiveServer
    exact: LiveServer
    gateway: LiveServer
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime

    def sq_control(self, path: str, **body: Any) -> Any:
        return self.http.post(f"{self.sq.url}/sandbox/{path}", json=body).raise_for_status().json()

    def checkout(self, seed: int) -> dict[str, Any]:
        placed = self.sq_control("orders", count=1, seed=seed, skus=[SKUS[seed % 2]])
        return {"id": placed["orders"][0], "number": placed["numbers"][0]}

    def deliveries(self, count: int) -> list[dict[str, Any]]:
        """Wait for at least `count` notifications the sandbox sent (successful or not)."""
        answer = self.http.get(f"{self.sq.url}/sandbox/deliveries", params={"min": count, "timeout": 15})
        return list(answer.raise_for_status().json()["deliveries"])

    def run_jobs(self) -> list[dict[str, Any]]:
        """The inbox pumped into jobs, and every queued event job run as a worker runs it."""
        return pairs.run_jobs(self.conn, self.rt)

    def exact_orders(self) -> dict[str, int]:
        state = self.http.get(f"{self.exact.url}/sandbox/state").raise_for_status().json()
        division = str(state["divisions"][0])
        refs: dict[str, int] = {}
        for order in state["entities"][division]["salesorder/SalesOrders"]:
            refs[str(order["YourRef"])] = refs.get(str(order["YourRef"]), 0) + 1
        return refs


@pytest.fixture
def env(rconn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    sq = serve(squarespace_sandbox(retry_delays=(0.3, 0.6, 1.2)), name="Squarespace sandbox")
    try:
        with pairs.exact_served() as (exact, _):
            port = free_port()
            config = make_config(sq.url, exact.url, f"http://127.0.0.1:{port}")
            gateway = serve(create_app(config, redis_url), port=port, name="gateway")
            try:
                with httpx.Client(timeout=20) as http, pairs.installed(config, rconn, monkeypatch) as rt:
                    http.post(f"{exact.url}/sandbox/seed/items", json={"skus": [*SKUS, "SHIPPING"]}).raise_for_status()
                    body = {"skus": SKUS, "quantity": 100}
                    http.post(f"{sq.url}/sandbox/products/seed", json=body).raise_for_status()
                    pairs.authorise_exact(http, exact, rconn)
                    [managed] = managed_endpoints(config)
                    plan = sync_endpoint(config, managed, rt.context(), connection=rconn)
                    assert sorted(a.topic for a in plan.actions) == ["extension.uninstall", "order.create",
                                                                     "order.update"]  # fmt: skip
                    yield Env(sq, exact, gateway, http, rconn, rt)
            finally:
                gateway.stop()
    finally:
        sq.stop()


def outcomes(results: list[dict[str, Any]]) -> list[str]:
    return [r["integrations"]["sq-to-exact"]["outcome"] for r in results if "sq-to-exact" in r.get("integrations", {})]


def test_a_checkout_is_booked_in_exact_once_through_its_signed_thin_notification(env):
    order = env.checkout(seed=1)
    [delivery] = env.deliveries(1)
    assert delivery["status_code"] == 202 and delivery["success"]
    results = env.run_jobs()
    assert outcomes(results) == ["created"]
    assert env.exact_orders() == {order["number"]: 1}
    # The same notification delivered again (Squarespace delivers at least once) is not queued twice.
    sync = env.run_jobs()
    assert sync == []


def test_a_lost_notification_is_repaired_by_the_reconciliation_poll_and_a_change_seen_twice_runs_once(env):
    assert polled_streams(env.rt.config) == {"sq": ["orders"]}  # polled although only notifications feed it
    env.sq_control("notifications/drop", count=1)
    lost = env.checkout(seed=2)
    assert env.run_jobs() == []  # nothing arrived
    poll("sq", "orders")
    assert outcomes(env.run_jobs()) == ["created"]
    assert env.exact_orders() == {lost["number"]: 1}
    delivered = env.checkout(seed=3)
    env.deliveries(1)
    assert outcomes(env.run_jobs()) == ["created"]
    poll("sq", "orders")  # reads both orders again: the same versions, processed already
    assert set(outcomes(env.run_jobs())) <= {"skipped"}
    assert env.exact_orders() == {lost["number"]: 1, delivered["number"]: 1}


def test_a_secret_rotation_loses_no_notification(env):
    first = env.checkout(seed=4)
    env.deliveries(1)  # the receiver has read (and keeps) the issued secrets
    hooks = SquarespaceWebhooks(env.rt.config.systems[0], Context(http=env.http, redis=env.conn))
    for sub in hooks.current():
        old = env.http.get(f"{env.sq.url}/sandbox/subscriptions/{sub.id}/secret").json()["secret"]
        hooks.rotate_secret(sub)
    second = env.checkout(seed=5)  # signed with the new secret, which the receiver has not read yet
    deliveries = env.deliveries(2)
    assert [d["status_code"] for d in deliveries] == [202, 202]
    # A notification signed with an old secret before the rotation, delivered late, still verifies.
    body = json.dumps({"id": "late-1", "websiteId": "w", "subscriptionId": "s", "topic": "order.update",
                       "createdOn": "2026-12-03T10:00:00Z", "data": {"orderId": first["id"], "update": "FULFILLED"}})
    signature = hmac.new(bytes.fromhex(old), body.encode(), hashlib.sha256).hexdigest()
    late = env.http.post(f"{env.gateway.url}/webhooks/sq-hooks", content=body,
                         headers={"Squarespace-Signature": signature, "Content-Type": "application/json"})  # fmt: skip
    assert late.status_code == 202
    forged = env.http.post(f"{env.gateway.url}/webhooks/sq-hooks", content=body + " ",
                           headers={"Squarespace-Signature": signature})  # fmt: skip
    assert forged.status_code == 401
    results = env.run_jobs()
    assert outcomes(results).count("created") == 2
    assert env.exact_orders() == {first["number"]: 1, second["number"]: 1}


def test_extension_uninstall_switches_the_integration_off_and_tells_the_operator(env, caplog):
    queued = env.sq_control("uninstall")["queued"]
    assert queued == 1
    env.deliveries(1)
    with caplog.at_level(logging.WARNING, logger="koppel.switches"):
        [result] = env.run_jobs()
    assert result["switched_off"] == ["sq-to-exact"]
    reason = switched_off(env.conn, "sq-to-exact")
    assert reason is not None and "uninstalled" in reason
    assert any("integration sq-to-exact switched off" in r.getMessage() for r in caplog.records)
    [entry] = [e for e in ActivityLog(env.conn).entries("sq-to-exact") if e.reason.startswith("switched off:")]
    assert entry.topic == "extension.uninstall" and entry.level == "error"
    order = env.checkout(seed=6)
    env.deliveries(2)
    [skipped] = env.run_jobs()
    assert skipped["integrations"]["sq-to-exact"]["outcome"] == "skipped"
    assert env.exact_orders() == {}
    assert poll("sq", "orders")["skipped"] == "every integration sq feeds is switched off"  # no API calls
    assert check("sq-hooks")["skipped"] == "every integration sq-hooks feeds is switched off"  # nor webhook checks
    assert switch_on(env.conn, "sq-to-exact")
    poll("sq", "orders")
    assert outcomes(env.run_jobs()) == ["created"]
    assert env.exact_orders() == {order["number"]: 1}
