"""Issue #4 end to end: WooCommerce orders booked in Exact Online exactly once.

Everything runs as in production (gateway/stack.py): both sandboxes over real HTTP, the gateway and
`koppel worker` processes, webhooks fired by the shop's checkout, OAuth, the shared Exact budget in
Redis. What counts is what ends up in the Exact sandbox: sales orders per YourRef (the WooCommerce
order number) and accounts per e-mail address.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rq.job import Job

from connectors.exactonline.ratelimit import RateLimiter
from gateway import keys
from gateway.envelope import Envelope, Event
from gateway.ingest import JOB_FUNC, make_queue
from gateway.redisserver import EmbeddedRedis, free_port
from gateway.snapshots import SnapshotStore
from gateway.stack import ENDPOINT, INTEGRATION, OrderOutcome, Stack, StackOptions

pytestmark = pytest.mark.integration

SEED = 4242
ORDERS = 30
FAST = {"worker_heartbeat_seconds": 1, "retry_base_seconds": 1}
"""Gateway settings that make a dead worker's job come back, and retries happen, within seconds."""
SKIP_REASONS = {"already in Exact Online", "this version of the record was processed already"}
"""An event of an order booked already: the same state is skipped on its version (workers/jobs.py), a
changed one by the orders ledger."""
UNLIMITED = {"exact_per_minute": 100_000, "exact_per_day": 1_000_000}
"""Rate limits on (the shared budget is used) but never reached: the tests below are about correctness."""


# -- reading Exact and the shop -------------------------------------------------------------------


def exact_records(stack: Stack, entity: str) -> list[dict[str, Any]]:
    state = stack.exact_state()
    return list(state["entities"][str(state["divisions"][0])][entity])


def orders_by_ref(stack: Stack) -> Counter[str]:
    """How many sales orders Exact holds per YourRef (the shop's order number)."""
    return Counter(str(o["YourRef"]) for o in exact_records(stack, "salesorder/SalesOrders"))


def accounts_by_email(stack: Stack) -> Counter[str]:
    return Counter(str(a["Email"]).lower() for a in exact_records(stack, "crm/Accounts"))


def shop_orders(stack: Stack, order_ids: list[str]) -> list[dict[str, Any]]:
    client = stack.woo_client()
    return [client.get_order(int(order_id)) for order_id in order_ids]


def emails_of(orders: list[dict[str, Any]]) -> set[str]:
    return {str(o["billing"]["email"]).lower() for o in orders}


def settled(stack: Stack, order_ids: list[str], timeout: float = 60) -> dict[str, OrderOutcome]:
    outcomes = stack.settle(order_ids, timeout=timeout)
    pending = [o for o in outcomes.values() if o.outcome == "pending"]
    assert not pending and stack.idle(), f"not settled in {timeout} s: {len(pending)} order(s) pending"
    return outcomes


def wait_for(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


def assert_booked_once(stack: Stack, orders: list[dict[str, Any]]) -> None:
    """Every order exactly once in Exact, and every customer of theirs exactly once."""
    refs = orders_by_ref(stack)
    assert {str(o["number"]): refs[str(o["number"])] for o in orders} == {str(o["number"]): 1 for o in orders}
    accounts = accounts_by_email(stack)
    assert {e: accounts[e] for e in emails_of(orders)} == dict.fromkeys(emails_of(orders), 1)


@pytest.fixture
def fresh_stack(tmp_path: Path, redis_url: str) -> Iterator[Any]:
    """A stack of its own, on the clean test Redis: `fresh_stack(**options)`."""
    started: list[Stack] = []

    def start(**options: Any) -> Stack:
        stack = Stack(StackOptions(data_dir=tmp_path, redis_url=redis_url, **options))
        started.append(stack.__enter__())
        return stack

    yield start
    for stack in started:
        stack.stop()


# -- one stack, two workers, shared by the tests that only add orders and events --------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Its own Redis: the function-scoped `redis_url` fixture flushes the shared one between tests.
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("e2e-redis"), port=free_port())
    server.start()
    try:
        options = StackOptions(data_dir=tmp_path_factory.mktemp("e2e"), redis_url=server.url, workers=2,
                               gateway=FAST, **UNLIMITED)  # fmt: skip
        with Stack(options) as running:
            yield running
    finally:
        server.stop()


@pytest.fixture(scope="module")
def placed(stack: Stack) -> tuple[list[str], dict[str, OrderOutcome]]:
    order_ids = stack.place_orders(ORDERS, seed=SEED)
    return order_ids, settled(stack, order_ids)


def test_every_order_is_created_in_exact_exactly_once(stack, placed):
    order_ids, outcomes = placed
    orders = shop_orders(stack, order_ids)
    assert Counter(o.outcome for o in outcomes.values()) == {"created": ORDERS}
    assert_booked_once(stack, orders)
    assert len(exact_records(stack, "salesorder/SalesOrders")) == ORDERS
    # Customers are not duplicated: one account per distinct e-mail among the orders.
    assert len(exact_records(stack, "crm/Accounts")) == len(emails_of(orders))


def test_the_second_event_of_every_order_is_skipped_as_already_in_exact(stack, placed):
    # order.created and order.updated arrive together; with two workers either may come first.
    order_ids, _ = placed
    events: dict[str, list[tuple[str, str, int]]] = {}
    for entry in stack.activity():
        if entry.resource_id in set(order_ids):
            events.setdefault(entry.resource_id, []).append((entry.outcome, entry.reason, entry.calls))
    assert len(events) == ORDERS
    for order_id, handled in events.items():
        assert sorted(outcome for outcome, _, _ in handled) == ["created", "skipped"], order_id
        [(reason, calls)] = [(r, c) for o, r, c in handled if o == "skipped"]
        assert (reason in SKIP_REASONS or reason.startswith("merged into job")) and calls == 0, order_id


def test_the_activity_log_has_an_outcome_for_every_delivered_event(stack, placed):
    order_ids, _ = placed
    delivered = Counter(
        (d["topic"], str(d["resource_id"])) for d in stack.deliveries() if str(d["resource_id"]) in set(order_ids)
    )
    logged = Counter((e.topic, e.resource_id) for e in stack.activity() if e.resource_id in set(order_ids))
    assert sum(delivered.values()) == 2 * ORDERS  # order.created and order.updated of every order
    assert logged == delivered


def test_duplicate_deliveries_and_replayed_jobs_create_nothing_twice(stack, placed):
    order_ids, _ = placed
    again = order_ids[:5]
    client = stack.woo_client()
    for order_id in again:  # saved again in the shop: WooCommerce fires order.updated once more
        client.update_order(int(order_id), {"customer_note": "leave at the door"})
    # ... and their order.created events are run again as RQ jobs, as an operator's replay would (the payload
    # the run that booked them received, kept in its snapshot; the workers' pumps ran them without an RQ job).
    queue = make_queue(stack.connection, stack.options.queue)
    store = SnapshotStore(stack.connection)
    booked = {e.resource_id: e.job_id for e in stack.activity()
              if e.topic == "order.created" and e.outcome == "created"}  # fmt: skip
    replayed = []
    for order_id in again:
        snapshot = store.load(INTEGRATION, booked[order_id])
        assert snapshot is not None and stack.connection.exists(keys.done(booked[order_id]))
        event = Event("order.created", "order", order_id, f"replay-{order_id}", snapshot["received"])
        envelope = Envelope.wrap(event, source="woocommerce", endpoint=ENDPOINT)
        replayed.append(queue.enqueue(JOB_FUNC, envelope.model_dump(mode="json")))
    assert len(replayed) == len(again)
    wait_for(
        "the new deliveries and the replays to be handled",
        lambda: len([e for e in stack.activity() if e.resource_id in set(again)]) == 4 * len(again) and stack.idle(),
        timeout=30,
    )
    redone = [e for e in stack.activity() if e.resource_id in set(again)][-2 * len(again) :]
    assert {e.outcome for e in redone} == {"skipped"} and {e.reason for e in redone} <= SKIP_REASONS
    assert_booked_once(stack, shop_orders(stack, order_ids))
    assert len(exact_records(stack, "salesorder/SalesOrders")) == ORDERS


def test_created_and_updated_of_one_order_processed_concurrently_book_it_once(fresh_stack):
    # As RQ jobs (direct_events off: the path of every retry and replay), whose spans show the two workers at
    # work on both events of an order at once; a pump's own run of a record keeps no start time (its events
    # waiting together are one run; tests/test_inbox_direct.py has two workers on one record's events).
    stack = fresh_stack(workers=2, gateway={**FAST, "direct_events": False}, **UNLIMITED)
    settled(stack, stack.place_orders(ORDERS, seed=SEED))  # warm: the customers known, the workers' clients open
    order_ids = stack.place_orders(20, seed=SEED + 1000)
    outcomes = settled(stack, order_ids)
    assert Counter(o.outcome for o in outcomes.values()) == {"created": 20}
    assert_booked_once(stack, shop_orders(stack, order_ids))
    # The two workers really did work on both events of an order at the same time (the lock made one wait).
    queue = make_queue(stack.connection, stack.options.queue)
    jobs = [j for j in Job.fetch_many(queue.finished_job_registry.get_job_ids(), connection=stack.connection,
                                      serializer=queue.serializer) if j is not None]  # fmt: skip
    spans: dict[str, list[tuple[float, float]]] = {}
    for job in jobs:
        resource = job.args[0]["resource_id"]
        if resource in set(order_ids) and job.started_at and job.ended_at:
            spans.setdefault(resource, []).append((job.started_at.timestamp(), job.ended_at.timestamp()))
    overlapping = [
        oid for oid, (a, b) in ((k, v) for k, v in spans.items() if len(v) == 2) if a[0] < b[1] and b[0] < a[1]
    ]
    assert overlapping, "no order had its two events processed concurrently; the test proved nothing"


def test_a_storm_of_429s_is_absorbed_without_losing_or_failing_an_order(stack, placed):
    # Exact's minute budget is gone (its limit drops to 1, Koppel's configured one stays far higher): every
    # call gets a real 429 until the minute ends. Koppel must wait and go on, never fail or drop an order.
    # The sandbox's window is Exact's clock minute, so this waits up to a minute.
    ratelimit = f"{stack.exact.url}/sandbox/ratelimit"
    before = throttled(stack)
    stack.http.post(ratelimit, json={"per_minute": 1}).raise_for_status()
    try:
        order_ids = stack.place_orders(20, seed=SEED + 2000)
        wait_for("Exact to answer 429", lambda: throttled(stack) > before, timeout=30)
    finally:
        stack.http.post(ratelimit, json={"per_minute": UNLIMITED["exact_per_minute"]}).raise_for_status()
        # Koppel learnt Exact's limit of 1 from the 429s; the limit it learns back applies from the window
        # after next. Forget it, so the workers go on when this minute ends.
        RateLimiter(stack.connection, stack.exact_state()["divisions"][0]).reset()
    outcomes = settled(stack, order_ids, timeout=90)
    assert Counter(o.outcome for o in outcomes.values()) == {"created": 20}
    entries = [e for e in stack.activity() if e.resource_id in set(order_ids)]
    # "retrying" is allowed: an order's second event may give up waiting for the first's lock, and retry.
    assert not [e for e in entries if e.outcome in ("failed", "error")]
    assert_booked_once(stack, shop_orders(stack, order_ids))


def throttled(stack: Stack) -> int:
    """How many calls Exact (the sandbox) has refused with 429 so far."""
    return sum(int(w["throttled"]) for w in stack.exact_state()["calls"]["windows"])


# -- stacks of their own -----------------------------------------------------------------------------


def test_missing_sku_fails_naming_it_and_a_replay_after_adding_the_item_books_once(fresh_stack):
    sku = "KOP-MOK-GROEN"
    stack: Stack = fresh_stack(missing_skus=(sku,), gateway=FAST, **UNLIMITED)
    order_ids = stack.place_orders(ORDERS, seed=SEED)
    orders = shop_orders(stack, order_ids)
    with_sku = {str(o["id"]) for o in orders if sku in {li["sku"] for li in o["line_items"]}}
    assert 0 < len(with_sku) < ORDERS, "the seed must give orders with and without the SKU"
    outcomes = settled(stack, order_ids)
    assert {oid for oid, o in outcomes.items() if o.outcome == "failed"} == with_sku
    assert {o.outcome for oid, o in outcomes.items() if oid not in with_sku} == {"created"}
    assert all(sku in outcomes[oid].reason for oid in with_sku)
    refs = orders_by_ref(stack)
    assert all(refs[str(o["number"])] == (0 if str(o["id"]) in with_sku else 1) for o in orders)

    queue = make_queue(stack.connection, stack.options.queue)
    failed = Job.fetch_many(queue.failed_job_registry.get_job_ids(), connection=stack.connection,
                            serializer=queue.serializer)  # fmt: skip
    assert {j.args[0]["resource_id"] for j in failed if j is not None} == with_sku
    assert all(sku in j.meta["reason"] for j in failed if j is not None)

    stack.add_exact_items([sku])
    replay = stack.cli("replay", "--integration", INTEGRATION)
    assert replay.returncode == 0, replay.stderr
    assert f"requeued {len(failed)} failed job(s)" in replay.stdout
    wait_for("the replayed jobs", lambda: queue.failed_job_registry.count == 0 and stack.idle(), timeout=30)
    outcomes = settled(stack, order_ids)
    assert {oid for oid, o in outcomes.items() if o.outcome == "created"} == set(order_ids)
    assert_booked_once(stack, orders)


def test_a_worker_killed_between_creating_the_customer_and_posting_the_order_books_both_once(fresh_stack):
    stack: Stack = fresh_stack(gateway=FAST)
    conn = stack.connection
    # The order is placed unpaid (not synced), then paid: one event books it.
    (order_id,) = stack.place_orders(1, seed=SEED, status="pending")
    settled(stack, [order_id])
    (order,) = shop_orders(stack, [order_id])
    number, email = str(order["number"]), str(order["billing"]["email"]).lower()
    # Exact allows just the calls up to the order's POST: current/Me, the account lookup and creation, the
    # contact (a company's), the items lookup. The worker then waits for the next minute before the POST.
    before_post = 4 + bool(order["billing"].get("company"))
    stack.http.post(f"{stack.exact.url}/sandbox/ratelimit", json={"per_minute": before_post}).raise_for_status()
    wait_for("a minute with time left in it", lambda: time.time() % 60 < 45, timeout=20)
    stack.woo_client().update_order_status(int(order_id), "processing")
    limiter = RateLimiter(conn, stack.exact_state()["divisions"][0])

    def waiting_before_the_post() -> bool:
        exhausted = limiter.snapshot().get("mrem") == 0
        return exhausted and accounts_by_email(stack)[email] == 1

    wait_for("the worker to wait for Exact's budget after creating the customer", waiting_before_the_post, 20)
    assert conn.hexists(f"koppel:inflight:{INTEGRATION}:orders", number)
    (worker,) = stack.workers
    stack.kill_worker(worker)
    assert orders_by_ref(stack)[number] == 0, "the order was posted before the worker was killed"

    # The operator raises the budget; a new worker takes over. RQ must hand the dead worker's job back.
    stack.http.post(f"{stack.exact.url}/sandbox/ratelimit", json={"per_minute": 1000}).raise_for_status()
    limiter.reset()
    stack.start_worker()
    # (The order's outcome so far is "skipped": its unpaid events. Wait for the booking itself.)
    wait_for("the order to be booked", lambda: stack.outcomes([order_id])[order_id].outcome == "created", 60)
    settled(stack, [order_id])
    assert orders_by_ref(stack)[number] == 1
    assert accounts_by_email(stack)[email] == 1
    assert not conn.hexists(f"koppel:inflight:{INTEGRATION}:orders", number)
