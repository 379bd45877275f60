"""Orders WooCommerce → Exact Online through the flow, against the Exact sandbox over real HTTP."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from connectors.exactonline.auth import OAuthApp
from connectors.exactonline.endpoints import Accounts, SalesOrders
from connectors.exactonline.odata import eq
from connectors.exactonline.sandbox import ExactSandbox, connect_sandbox, create_sandbox
from gateway import keys
from gateway.activity import ActivityLog
from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError
from tests.conftest import LiveServer, serve
from workers import runtime
from workers.jobs import process_event, run_event
from workers.ledger import EARLIER_ATTEMPT, Ledger

pytestmark = pytest.mark.integration

REDIRECT = "https://koppel.example/oauth/exact/callback"
ORDER = json.loads((Path(__file__).parent / "fixtures" / "woocommerce" / "order_company_coupon.json").read_text())
SKUS = ["MEEL-SPELT-5", "BAK-PROFI-R40", "OVEN-HS", "SHIPPING", "FEE", "DISCOUNT"]


def make_config(base_url: str, **settings: object) -> Config:
    return parse_config(
        {
            "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
            "systems": [
                {
                    "id": "exact",
                    "kind": "exactonline",
                    "base_url": base_url,
                    "credentials": {"client_secret": "env:EXACT_CLIENT_SECRET"},
                    "settings": {"client_id": "koppel-sandbox"},
                }
            ],
            "integrations": [
                {"id": "shop-to-exact", "source": "shop", "target": "exact", "flows": ["orders"], "settings": settings}
            ],
        },
        environ={"WC_SECRET": "s", "EXACT_CLIENT_SECRET": "sandbox-secret"},
    )


@dataclass
class Env:
    live: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime

    def run(self, payload: dict) -> dict:
        integration = self.rt.config.integrations[0]
        event = Event("order.created", "order", str(payload["id"]), f"k{payload['id']}", payload)
        return run_event(self.rt, integration, Envelope.wrap(event, source="woocommerce", endpoint="shop")).as_dict()

    def in_exact(self, your_ref: str) -> int:
        """How many sales orders Exact holds with this YourRef (asked through a fresh client)."""
        client = self.rt.target("exact").exact
        return len(client.query(SalesOrders, filter=eq("YourRef", your_ref)))

    def accounts(self, email: str) -> int:
        return len(self.rt.target("exact").exact.query(Accounts, filter=eq("Email", email)))


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest) -> Iterator[Env]:
    sandbox = create_sandbox(redirect_uris=(REDIRECT,), rate_limits=False)
    live = serve(sandbox)
    try:
        with httpx.Client(timeout=10) as http:
            settings = getattr(request, "param", {})
            rt = runtime.Runtime(config=make_config(live.url, **settings), connection=rconn)
            app = OAuthApp(live.url, "koppel-sandbox", "sandbox-secret", REDIRECT)
            connect_sandbox(http, app, rconn, "exact")
            http.post(f"{live.url}/sandbox/seed/items", json={"skus": SKUS}).raise_for_status()
            try:
                yield Env(live, sandbox.state.sandbox, http, rconn, rt)
            finally:
                rt.close()
    finally:
        live.stop()


def order(number: int, email: str | None = None) -> dict:
    payload = copy.deepcopy(ORDER)
    payload["id"] = payload["number"] = number
    payload["number"] = str(number)
    if email:
        payload["billing"]["email"] = email
    return payload


def test_creates_the_order_once_with_its_customer(env):
    first = env.run(order(7001))
    assert first["outcome"] == "created"
    assert first["account"] == "created"
    again = env.run(order(7001))
    assert again == {
        "outcome": "skipped",
        "number": "7001",
        "reason": "this version of the record was processed already",  # the same event: the same version
        "target_id": first["target_id"],
        "calls": 0,
    }
    assert env.in_exact("7001") == 1


def test_a_returning_customer_costs_one_call_per_order(env):
    env.run(order(7002))
    second = env.run(order(7003))
    assert second["outcome"] == "created"
    assert second["account"] == "cached"
    assert second["calls"] == 1
    assert env.accounts(ORDER["billing"]["email"]) == 1


def test_missing_skus_fail_permanently_naming_them(env):
    payload = order(7004)
    payload["line_items"][0]["sku"] = "NO-SUCH-SKU"
    with pytest.raises(PermanentError, match="NO-SUCH-SKU"):
        env.run(payload)


def test_an_attempt_that_failed_before_its_write_owes_no_lookup(env, rconn):
    payload = order(7010)
    payload["line_items"][0]["sku"] = "NOT-YET-AN-ITEM"
    with pytest.raises(PermanentError, match="NOT-YET-AN-ITEM"):
        env.run(payload)
    assert not Ledger(rconn, "shop-to-exact", "orders").in_flight("7010")
    env.http.post(f"{env.live.url}/sandbox/seed/items", json={"skus": ["NOT-YET-AN-ITEM"]}).raise_for_status()
    exact = env.rt.target("exact").exact
    before = dict(exact.calls_by_endpoint)
    assert env.run({**payload, "date_modified_gmt": "2026-11-20T10:05:00"})["outcome"] == "created"  # the replay
    spent = {k: v - before.get(k, 0) for k, v in exact.calls_by_endpoint.items() if v != before.get(k, 0)}
    assert "GET salesorder/SalesOrders" not in spent, spent  # no "did an earlier attempt book it?"
    assert env.in_exact("7010") == 1


def test_a_crash_between_post_and_ledger_never_books_twice(env, rconn):
    created = env.run(order(7005))
    ledger = Ledger(rconn, "shop-to-exact", "orders")
    # as if the worker died after Exact accepted the POST but before the ledger was written
    rconn.hdel(ledger.key, "7005")
    ledger.mark("7005")
    for seen in rconn.scan_iter(keys.cache("shop-to-exact", "seen:orders", "*")):  # the run never finished
        rconn.delete(seen)
    retry = env.run(order(7005))
    assert (retry["outcome"], retry["reason"]) == ("created", EARLIER_ATTEMPT)  # the first run never said so
    assert retry["target_id"] == created["target_id"]
    assert ledger.created("7005") == created["target_id"]
    assert env.in_exact("7005") == 1


@pytest.mark.parametrize("env", [{"order_statuses": ["completed"]}], indirect=True)
def test_orders_outside_the_status_filter_are_skipped(env, rconn):
    assert env.run(order(7006))["outcome"] == "skipped"
    assert Ledger(rconn, "shop-to-exact", "orders").lookup("7006") == (None, False)  # not marked: nothing owed


def test_a_stale_cached_account_is_looked_up_again(env, rconn):
    env.run(order(7007))
    cache = "koppel:cache:shop-to-exact:customers"
    email = ORDER["billing"]["email"].lower()
    _, _, fingerprint = rconn.hget(cache, email).decode().partition(":")
    rconn.hset(cache, email, f"00000000-0000-4000-8000-00000000dead:{fingerprint}")  # deleted in Exact since
    second = env.run(order(7008))
    assert second["outcome"] == "created"
    assert env.in_exact("7008") == 1
    assert env.accounts(ORDER["billing"]["email"]) == 1


def test_the_ledger_lookup_answers_booked_and_in_flight_at_once(rconn):
    ledger = Ledger(rconn, "shop-to-exact", "orders")
    assert ledger.lookup("9001") == (None, False)
    ledger.mark("9001")
    assert ledger.lookup("9001") == (None, True)
    ledger.record("9001", "exact-id")
    assert ledger.lookup("9001") == ("exact-id", False)
    assert (ledger.created("9001"), ledger.in_flight("9001")) == ledger.lookup("9001")


def test_the_lookup_marks_only_what_is_neither_booked_nor_in_flight_and_keeps_an_earlier_marks_time(rconn):
    ledger = Ledger(rconn, "shop-to-exact", "orders")
    looked = ledger.lookup_mark("9101", mark=False)
    assert (looked.done, looked.in_flight, looked.marked) == (None, False, False)
    assert ledger.lookup("9101") == (None, False)
    looked = ledger.lookup_mark("9101", mark=True, also=lambda pipe: pipe.get("nothing-here"))
    assert (looked.done, looked.in_flight, looked.marked, looked.also) == (None, False, True, [None])
    first = ledger.marked_at("9101")
    assert first is not None
    rconn.hset(ledger.flight, "9101", "1000000000.000")  # an earlier attempt's mark, long ago
    looked = ledger.lookup_mark("9101", mark=True)
    assert (looked.in_flight, looked.marked) == (True, False)
    assert looked.marked_at == ledger.marked_at("9101") and looked.marked_at.timestamp() == 1_000_000_000
    ledger.record("9101", "exact-id")
    looked = ledger.lookup_mark("9101", mark=True)
    assert (looked.done, looked.in_flight, looked.marked) == ("exact-id", False, False)
    assert ledger.lookup("9101") == ("exact-id", False)


class Killed(BaseException):
    """The worker process dying: no Koppel error, nothing after it runs."""


def test_an_order_posted_just_before_the_worker_died_is_logged_created_by_the_retry(env, rconn, monkeypatch):
    monkeypatch.setattr(runtime, "_runtime", env.rt)  # as `koppel worker` installs it: jobs find it
    event = Event("order.created", "order", "7020", "k7020", order(7020))
    job = Envelope.wrap(event, source="woocommerce", endpoint="shop").model_dump(mode="json")
    record = Ledger.record

    def dies_before_the_ledger(self: Ledger, key: str, target_id: str, pipe: object = None) -> None:
        monkeypatch.setattr(Ledger, "record", record)
        raise Killed  # Exact has the order; the ledger and the activity log never hear of it

    monkeypatch.setattr(Ledger, "record", dies_before_the_ledger)
    with pytest.raises(Killed):
        process_event(job)
    assert env.in_exact("7020") == 1
    assert ActivityLog(rconn).latest("shop-to-exact") is None

    process_event(job)  # RQ runs the job again
    [entry] = ActivityLog(rconn).entries("shop-to-exact")
    [booked] = env.rt.target("exact").exact.query(SalesOrders, filter=eq("YourRef", "7020"))
    assert (entry.outcome, entry.number, entry.target_id) == ("created", "7020", str(booked["OrderID"]))
    assert entry.reason == EARLIER_ATTEMPT
    assert env.in_exact("7020") == 1
    assert Ledger(rconn, "shop-to-exact", "orders").created("7020") == str(booked["OrderID"])


def test_the_ledger_entry_goes_with_the_lock_release_and_a_death_before_it_still_books_once(env, rconn, monkeypatch):
    monkeypatch.setattr(runtime, "_runtime", env.rt)
    event = Event("order.created", "order", "7021", "k7021", order(7021))
    job = Envelope.wrap(event, source="woocommerce", endpoint="shop").model_dump(mode="json")
    ledger = Ledger(rconn, "shop-to-exact", "orders")
    record_many = ActivityLog.record_many

    def dies_after_the_flow(self: ActivityLog, *args: object, **kwargs: object) -> None:
        # the flow returned (Exact has the order), the pipeline with the ledger entry not yet sent
        assert ledger.lookup("7021") == (None, True)
        monkeypatch.setattr(ActivityLog, "record_many", record_many)
        raise Killed

    monkeypatch.setattr(ActivityLog, "record_many", dies_after_the_flow)
    with pytest.raises(Killed):
        process_event(job)
    assert env.in_exact("7021") == 1
    assert ledger.lookup("7021") == (None, True)  # the marker stayed: the retry owes a lookup

    process_event(job)
    [entry] = ActivityLog(rconn).entries("shop-to-exact")
    assert (entry.outcome, entry.reason) == ("created", EARLIER_ATTEMPT)
    assert env.in_exact("7021") == 1
    assert ledger.lookup("7021") == (entry.target_id, False)
    process_event(job)  # once more: answered, nothing written
    assert env.in_exact("7021") == 1
