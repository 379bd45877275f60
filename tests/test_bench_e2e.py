"""bench/e2e's pure helpers: percentiles and one batch's figures from activity entries."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from bench.e2e.run import (
    Batch,
    batch_figures,
    cpu_per_order,
    deliver_concurrently,
    endpoint_delta,
    parse_args,
    percentile,
    problems_of,
    run_stack,
    spread_ms,
    worker_scaling,
)
from connectors.woocommerce.sandbox import create_sandbox
from gateway.activity import Activity
from gateway.stack import OrderOutcome
from tests.conftest import serve


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99.0
    assert percentile([1.0, 2.0], 100) == 2.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_spread_is_in_milliseconds() -> None:
    assert spread_ms([0.1, 0.2, 0.3]) == {"p50": 200.0, "p99": 298.0, "max": 300.0, "n": 3}


def entry(order: str, topic: str, outcome: str, received: float, done: float, calls: int) -> Activity:
    return Activity("i", "orders", topic, order, outcome, received, done, calls=calls)


def test_batch_figures() -> None:
    entries = [
        entry("1", "order.created", "created", 100.0, 100.5, 4),
        entry("1", "order.updated", "skipped", 100.1, 100.6, 0),
        entry("2", "order.created", "created", 100.2, 101.2, 1),
        entry("3", "order.created", "failed", 100.3, 100.4, 1),
        entry("9", "order.created", "created", 99.0, 99.5, 1),  # another batch's order
    ]
    outcomes = {
        "1": OrderOutcome("1", "created", calls=4),
        "2": OrderOutcome("2", "created", calls=1),
        "3": OrderOutcome("3", "failed", reason="SKU X missing", calls=1),
    }
    figures = batch_figures(entries, outcomes, {"1": 99.9, "2": 99.9, "3": 99.9})
    assert (figures.orders, figures.created, figures.events) == (3, 2, 4)
    assert figures.outcomes == {"created": 2, "failed": 1}
    assert figures.reasons == {"SKU X missing": 1}
    assert figures.window_s == pytest.approx(1.2)  # first received 100.0 → last created 101.2
    assert figures.orders_per_s == pytest.approx(2 / 1.2, abs=0.05)
    assert figures.delivered_s == pytest.approx(0.3)
    assert figures.latency_ms["max"] == 1000.0 and figures.latency_ms["n"] == 2
    assert figures.placement_ms["max"] == pytest.approx(1300.0)
    assert (figures.calls, figures.calls_per_order) == (6, 3.0)
    assert figures.calls_by_event["order.created created 4"] == 1


def test_endpoint_delta_keeps_what_changed() -> None:
    assert endpoint_delta({"GET a": 2, "POST b": 1}, {"GET a": 2, "POST b": 4, "GET c": 1}) == {"GET c": 1, "POST b": 3}


def test_cpu_per_order_sums_the_workers() -> None:
    cpu = {"gateway": 10.0, "gateway_main": 8.0, "worker1": 30.0, "worker2": 20.0, "redis": 5.0, "driver": 15.0}
    assert cpu_per_order(cpu, 10.0, 100) == {"workers": 50.0, "gateway": 10.0, "redis": 5.0, "driver": 15.0}
    assert cpu_per_order(cpu, 10.0, 0) == {}


def test_a_pair_is_chosen_by_name_and_an_unknown_one_is_refused_naming_the_pairs(capsys) -> None:
    assert parse_args([]).pair == "woocommerce-exactonline"
    assert parse_args(["--pair", "winstore-businesscentral"]).pair == "winstore-businesscentral"
    with pytest.raises(SystemExit):
        parse_args(["--pair", "bc"])
    assert "choose one of woocommerce-exactonline, winstore-exactonline, winstore-businesscentral" in (
        capsys.readouterr().err
    )


def test_a_record_the_target_created_twice_is_a_problem_named_in_the_targets_terms() -> None:
    figures = batch_figures([entry("1", "article.sync", "created", 1.0, 1.5, 2)],
                            {"1": OrderOutcome("1", "created", calls=2)}, {"1": 0.5})  # fmt: skip
    batch = Batch("articles steady 1", figures, 4, 4.0, {"GET items": 2, "POST items": 2}, 0.0, 0.0, {},
                  record="article", target="Business Central", created_endpoint="POST items")  # fmt: skip
    assert problems_of([batch]) == ["articles steady 1: Business Central received 2 POST items for 1 articles created"]
    batch.sandbox_by_endpoint["POST items"] = 1
    assert problems_of([batch]) == []


@pytest.mark.integration
def test_the_business_central_pair_is_measured_in_calls_per_record(tmp_path) -> None:
    """bench/e2e's stack part (no wrk) on a few records: every feed of the pair, BC's calls counted."""
    args = parse_args(["--pair", "winstore-businesscentral", "--warmup", "2", "--orders", "3", "--timeout", "120"])
    batches = run_stack(args, tmp_path)
    names = ["articles → Business Central", "customers → Business Central", "orders → Business Central",
             "orders → Winstore"]  # fmt: skip
    assert [b.name for b in batches] == [f"{name} {batch}" for name in names for batch in ("cold", "steady 1")]
    assert problems_of(batches) == []
    articles, customers, orders, back = batches[1], batches[3], batches[5], batches[7]
    assert [(b.target, b.record, b.figures.created) for b in (articles, customers, orders, back)] == [
        ("Business Central", "article", 3), ("Business Central", "customer", 3), ("Business Central", "order", 3),
        ("Winstore", "order", 3)]  # fmt: skip
    # what the BC sandbox created is what Koppel created (the polls of BC's stock and orders read, never write)
    assert articles.sandbox_by_endpoint["POST items"] == 3 and articles.figures.calls_per_order >= 1
    assert customers.sandbox_by_endpoint["POST customers"] == 3 and customers.figures.calls_per_order >= 1
    assert orders.sandbox_by_endpoint["POST salesOrders"] == 3 and orders.figures.calls_per_order >= 1
    # BC's orders were read after its notifications: one read per order, or fewer when BC's batch came as a
    # `collection` notification (re-read by lastModifiedDateTime, paged) — which of the two is BC's timing
    assert back.others["bc"] >= 1


@pytest.mark.integration
def test_the_squarespace_pair_is_measured_in_exact_calls_per_order(tmp_path) -> None:
    """Checkouts in Squarespace, notified through the subscriptions `endpoints sync` made, booked in Exact."""
    args = parse_args(["--pair", "squarespace-exactonline", "--warmup", "2", "--orders", "3", "--timeout", "120"])
    batches = run_stack(args, tmp_path)
    assert [b.name for b in batches] == ["cold", "steady 1"]  # one feed: batches named as the main job's
    assert problems_of(batches) == []
    steady = batches[1]
    assert (steady.target, steady.record, steady.figures.created) == ("Exact Online", "order", 3)
    assert steady.sandbox_by_endpoint["POST salesorder/SalesOrders"] == 3 and steady.figures.calls_per_order >= 1
    assert steady.others["sq"] >= 3  # each order read from Squarespace (its notification carries the id only)
    assert steady.lines_per_order >= 1


def test_worker_counts_and_the_shop_concurrency_are_parsed_and_checked() -> None:
    default = parse_args([])
    assert (default.worker_counts, default.workers, default.shop_concurrency) == ([1], 1, 8)
    both = parse_args(["--workers", "1,2", "--shop-concurrency", "1"])
    assert (both.worker_counts, both.workers, both.shop_concurrency) == ([1, 2], 2, 1)
    for bad in (["--workers", "one"], ["--workers", "1,0"], ["--shop-concurrency", "0"], ["--shop-concurrency", "65"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_scaling_is_each_counts_mean_steady_rate_over_the_first() -> None:
    def batch(name: str, rate: float) -> Batch:
        figures = batch_figures([], {}, {})
        figures.orders_per_s = rate
        return Batch(name, figures, 0, 0.0, {}, 0.0, 0.0, {})

    steady = [batch("1w steady 1", 30.0), batch("1w steady 2", 40.0), batch("2w steady 1", 63.0)]
    assert worker_scaling([1, 2], steady) == {"1→2": 1.8}
    assert worker_scaling([1], steady) == {}
    assert worker_scaling([1, 2], [batch("2w steady 1", 5.0)]) == {"1→2": 0.0}


@pytest.mark.integration
def test_the_sandboxes_that_send_webhooks_are_set_to_deliver_concurrently() -> None:
    shop = serve(create_sandbox())
    plain = serve(Starlette())  # no webhooks: no such route (404), left alone
    try:
        with httpx.Client(timeout=10) as http:
            assert deliver_concurrently(http, [shop.url, plain.url], 6) == [shop.url]
            assert http.get(f"{shop.url}/sandbox/deliveries/concurrency").json() == {"concurrency": 6}
    finally:
        shop.stop()
        plain.stop()
