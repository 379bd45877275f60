"""bench/e2e driver: orders through the whole stack, beside bench/ingest's no-op ceiling from the same run.

    .venv/bin/python -m bench.e2e [--pair woocommerce-exactonline] [--workers 1] [--orders 500] [--warmup 200]
                                  [--batches 1] [--rate 0] [--shop-concurrency 8]

1. The no-op ceiling, exactly as bench/ingest measures it (its code, imported): `bench.ingest.apps:noop_app`
   in its own uvicorn process loaded by wrk (`-t1 -c64`, warm-up, then `--noop-duration` s), then stopped.
2. The stack (gateway/stack.py) on a fresh embedded Redis (a free port, data in a temp dir): both
   sandboxes on threads of this process, the gateway and `--workers` `koppel worker` processes, Exact's
   rate limits switched off (the sandbox's and the client's budget), OAuth, items and webhooks set up. The
   sandboxes keep `--shop-concurrency` webhook deliveries in flight at once (1: one at a time, as one
   WooCommerce queue runner sends them), so the gateway and workers are the limit, not the shop's pace.
   `--workers 1,2` runs a stack per count, one after the other, and prints the scaling.
3. A cold batch of `--warmup` orders placed in the shop (Exact knows no customer yet), then
   `--batches` measured batches of `--orders` each; after each, `Stack.settle` waits for every order.
   Orders go in at once (`--rate 0`: a burst; throughput) or at `--rate` orders/s (latency at that load).
4. Per batch, from the activity log: orders/s (first delivery received at the gateway → last order
   created), delivery → created latency (p50/p99/max), placement → created, Exact calls per created
   order by Koppel's count and by the Exact sandbox's own, the calls each kind of event cost, CPU.
   Prints a table, writes bench/results/e2e-<UTC timestamp>.json.

`--pair` (gateway/pairs.py) measures another pair instead: each of its feeds in turn (Winstore ⇄ Business
Central: articles Winstore → BC, customers Winstore → BC, orders Winstore → BC, then orders BC → Winstore),
a cold batch and the measured batches each, `--orders` being the records per batch; a batch is named by
its records and target ("orders → Business Central steady 1"). The calls per record are the target's
(Koppel's count and its sandbox's), and every other system's sandbox count beside them (BC's reads of the
orders it notified).

Exit status 1 when an order was not created (failed, skipped or still pending at the timeout) or
the run could not measure; 130 when interrupted. Every process started is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import platform
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentile, run_bench
from bench.ingest import run as ingest
from connectors.sandboxkit.webhooks import MAX_CONCURRENCY
from gateway.activity import Activity
from gateway.pairs import PAIRS, WOO_EXACT, Feed, Pair
from gateway.redisserver import EmbeddedRedis, free_port, redact_url
from gateway.stack import OrderOutcome, Stack, StackOptions

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
WORKDIR_PREFIX = "koppel-bench-e2e-"
NOISY_OTHER = 15.0
"""% of a core used by other processes above which a run is called noisy (as bench/ingest does)."""


def say(message: str) -> None:
    print(f"bench/e2e: {message}", file=sys.stderr, flush=True)


# -- pure helpers --------------------------------------------------------------------------------


def spread_ms(seconds: Iterable[float]) -> dict[str, float]:
    """p50, p99 and max of durations given in seconds, in ms."""
    values = list(seconds)
    return {
        "p50": round(1000 * percentile(values, 50), 1),
        "p99": round(1000 * percentile(values, 99), 1),
        "max": round(1000 * max(values, default=0.0), 1),
        "n": len(values),
    }


@dataclass
class Figures:
    """What the activity log says about one batch of orders."""

    orders: int
    created: int
    outcomes: dict[str, int]
    events: int
    """Activity entries of the batch's orders: one per delivery a flow handled (created, updated…)."""
    window_s: float
    """First delivery received at the gateway → last order created at Exact."""
    orders_per_s: float
    events_per_s: float
    delivered_s: float
    """First → last delivery received at the gateway: when close to `window_s`, the shop's sending
    (one delivery at a time, as WooCommerce's queue runner does) paced the batch, not the workers."""
    latency_ms: dict[str, float]
    """Delivery received at the gateway → order created at Exact (the creating event's latency)."""
    placement_ms: dict[str, float]
    """The shop's checkout (the end of the driver's request that placed the order) → created at Exact."""
    calls: int
    """Exact calls by Koppel's own count (the activity log's `calls`), all events of the batch's orders."""
    calls_per_order: float
    calls_by_event: dict[str, int]
    """`<topic> <outcome> <calls>` → events: where the calls went."""
    reasons: dict[str, int] = field(default_factory=dict)
    """Why orders were not created (reason → orders)."""
    slowest: list[tuple[float, float, str]] = field(default_factory=list)
    """The 10 slowest creations: (s from the batch's first delivery received, latency ms, topic);
    stalls that hit consecutive orders show as neighbouring receipt times."""


def batch_figures(
    entries: Iterable[Activity], outcomes: dict[str, OrderOutcome], placed_at: dict[str, float]
) -> Figures:
    """Figures of one batch: its orders' activity entries, their outcomes (`Stack.outcomes`) and
    placement times (order id → epoch s)."""
    mine = [e for e in entries if e.resource_id in placed_at]
    created = {e.resource_id: e for e in mine if e.outcome == "created"}
    first = min((e.received_at for e in mine), default=0.0)
    last = max((e.done_at for e in created.values()), default=0.0)
    window = max(last - first, 0.0)
    calls = sum(o.calls for o in outcomes.values())
    reasons = collections.Counter(o.reason or o.outcome for o in outcomes.values() if o.outcome != "created")
    return Figures(
        orders=len(placed_at),
        created=len(created),
        outcomes=dict(collections.Counter(o.outcome for o in outcomes.values()).most_common()),
        events=len(mine),
        window_s=round(window, 3),
        orders_per_s=round(len(created) / window, 1) if window else 0.0,
        events_per_s=round(len(mine) / window, 1) if window else 0.0,
        delivered_s=round(max((e.received_at for e in mine), default=0.0) - first, 3),
        latency_ms=spread_ms(e.latency for e in created.values()),
        placement_ms=spread_ms(e.done_at - placed_at[oid] for oid, e in created.items()),
        calls=calls,
        calls_per_order=round(calls / len(created), 3) if created else 0.0,
        calls_by_event=dict(collections.Counter(f"{e.topic} {e.outcome} {e.calls}" for e in mine).most_common()),
        reasons=dict(reasons.most_common(10)),
        slowest=[
            (round(e.received_at - first, 2), round(1000 * e.latency, 1), e.topic)
            for e in sorted(created.values(), key=lambda e: -e.latency)[:10]
        ],
    )


def endpoint_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Per-endpoint call counts added between two snapshots of the sandbox's counters."""
    return {name: n - before.get(name, 0) for name, n in sorted(after.items()) if n - before.get(name, 0)}


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Batch:
    name: str
    figures: Figures
    sandbox_calls: int
    """Target calls the sandbox answered during the batch (its own counter: token requests included)."""
    sandbox_calls_per_order: float
    sandbox_by_endpoint: dict[str, int]
    lines_per_order: float
    """Line items per order in this batch: the naive cost is 4 + lines calls per order."""
    placing_s: float
    """Time the driver took to place the batch in the shop."""
    cpu: dict[str, float]
    """% of one core over the batch (placing → settled), as bench/ingest's CpuMeter measures it."""
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    """CPU ms per created order of each process (workers summed): less noisy than orders/s on a shared machine."""
    record: str = "order"
    target: str = "Exact"
    """The target system's title: whose calls these are."""
    created_endpoint: str = ""
    """The target sandbox's counter of records created (one per record: none booked twice)."""
    target_calls: float | None = None
    """The pair's bound on calls per record in steady state, when it has one."""
    others: dict[str, int] = field(default_factory=dict)
    """Calls the pair's other sandboxes answered during the batch (system id → calls)."""


def cpu_per_order(cpu: dict[str, float], elapsed: float, created: int) -> dict[str, float]:
    """CPU ms per created order of gateway, workers (together), Redis and the driver (the sandboxes)."""
    if not created:
        return {}
    parts = {name: value for name, value in cpu.items() if not name.endswith(("_main", "_threads"))}
    totals = {"workers": sum(v for name, v in parts.items() if name.startswith("worker"))}
    totals |= {name: parts.get(name, 0.0) for name in ("gateway", "redis", "driver")}
    return {name: round(10 * value * elapsed / created, 2) for name, value in totals.items()}


def place(stack: Stack, feed: Feed, count: int, rate: float, seed: int) -> dict[str, float]:
    """Place `count` records at once (`rate` 0) or in chunks every 0.1 s at `rate` records/s; id → placed at."""
    if rate <= 0:
        ids = feed.place(stack, count, seed)
        now = time.time()
        return dict.fromkeys(ids, now)
    placed: dict[str, float] = {}
    tick = 0.1
    per_tick = max(1, round(rate * tick))
    start = time.monotonic()
    for chunk in range(math.ceil(count / per_tick)):  # bounded: one request per chunk
        delay = start + chunk * per_tick / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ids = feed.place(stack, min(per_tick, count - len(placed)), seed + len(placed))
        now = time.time()
        placed.update(dict.fromkeys(ids, now))
    return placed


def run_batch(
    stack: Stack, feed: Feed, name: str, count: int, args: argparse.Namespace, seed: int, watch: dict[str, int]
) -> tuple[Batch, list[str]]:
    """Place one batch of the feed's records, wait for them, and measure it; the batch and the records' ids."""
    systems = [system.id for system in stack.pair.systems]
    calls_before = {system: stack.calls(system) for system in systems}
    since = time.time()
    meter = ingest.CpuMeter(watch)
    started = time.monotonic()
    placed = place(stack, feed, count, args.rate, seed)
    placing = time.monotonic() - started
    say(f"{name}: placed {count} {feed.record}s in {placing:.1f} s; waiting for them")
    outcomes = stack.settle(list(placed), timeout=args.timeout, since=since, interval=0.5, integration=feed.integration)
    cpu = meter.stop()
    elapsed = time.monotonic() - started
    cpu.pop("wrk", None)  # no wrk in this phase
    calls_after = {system: stack.calls(system) for system in systems}
    figures = batch_figures(stack.activity(since, feed.integration), outcomes, placed)
    added = {system: int(calls_after[system]["total"]) - int(calls_before[system]["total"]) for system in systems}
    sandbox_calls = added.pop(feed.target)
    batch = Batch(
        name=name,
        figures=figures,
        sandbox_calls=sandbox_calls,
        sandbox_calls_per_order=round(sandbox_calls / figures.created, 3) if figures.created else 0.0,
        sandbox_by_endpoint=endpoint_delta(calls_before[feed.target]["by_endpoint"],
                                           calls_after[feed.target]["by_endpoint"]),
        lines_per_order=0.0,
        placing_s=round(placing, 2),
        cpu=cpu,
        cpu_ms_per_order=cpu_per_order(cpu, elapsed, figures.created),
        record=feed.record,
        target=feed.target_title,
        created_endpoint=feed.created,
        target_calls=feed.target_calls,
        others=added,
    )  # fmt: skip
    say(f"{name}: {figures.created}/{count} created, {figures.orders_per_s:g} {feed.record}s/s")
    return batch, list(placed)


def measure_noop(args: argparse.Namespace, workdir: Path) -> ingest.WrkResult:
    """bench/ingest's no-op ceiling: its request files, its server, its wrk run (pinned as it pins)."""
    noop_args = ingest.parse_args(["-d", f"{args.noop_duration:g}", "--warmup", "2", "--max-rate", "1000"])
    # small request files: the no-op route reads them over again (wraps), and nothing there dedupes
    prefixes = ingest.generate(workdir, noop_args)
    try:
        _, run = ingest.bench_noop(noop_args, workdir, prefixes)
    finally:
        for request_file in workdir.glob("*.req"):
            request_file.unlink()
    if run.non_2xx or run.socket_errors or not run.requests:
        raise ingest.BenchFailure(f"no-op run: {run.non_2xx} non-2xx answers, socket errors {run.errors}")
    return run


def deliver_concurrently(http: httpx.Client, urls: Iterable[str], concurrency: int) -> list[str]:
    """Let each sandbox that sends webhooks keep `concurrency` deliveries in flight
    (`POST /sandbox/deliveries/concurrency`); the URLs of those that took it (one without webhooks answers 404)."""
    taken = []
    for url in urls:
        answer = http.post(f"{url}/sandbox/deliveries/concurrency", json={"concurrency": concurrency})
        if answer.status_code == 404:
            continue
        answer.raise_for_status()
        taken.append(url)
    return taken


def run_stack(args: argparse.Namespace, workdir: Path, workers: int | None = None) -> list[Batch]:
    """Start the stack with `workers` workers (the first of `--workers`) on its own embedded Redis, run each
    feed's cold and measured batches, stop it all."""
    pair: Pair = PAIRS[args.pair]
    workers = workers or args.worker_counts[0]
    # a fresh Redis per stack: the next stack's shop numbers its orders from 1 again
    embedded = EmbeddedRedis(data_dir=workdir / f"redis-data-{workers}", port=free_port())
    url = embedded.start()
    runs: list[tuple[Batch, list[str], Feed]] = []
    try:
        options = StackOptions(
            data_dir=workdir / f"stack-{workers}", redis_url=url, exact_rate_limits=False, workers=workers,
        )  # fmt: skip
        say(f"starting the stack ({pair.title}): Redis {redact_url(url)}, gateway, {workers} worker(s), sandboxes "
            f"(rate limits off, {args.shop_concurrency} webhook deliveries in flight at once)")  # fmt: skip
        with Stack(options, pair) as stack:
            assert stack.gateway is not None and embedded.process is not None
            deliver_concurrently(stack.http, [server.url for server in stack.sandboxes.values()], args.shop_concurrency)
            if pair.public_url:
                stack.sync_endpoints().check_returncode()  # the pair's webhooks (BC's subscriptions)
            watch = {"gateway": stack.gateway.pid, "redis": embedded.process.pid, "driver": os.getpid()}
            watch |= {f"worker{i + 1}": proc.pid for i, proc in enumerate(stack.workers)}
            for feed in pair.feeds:
                prefix = "" if len(pair.feeds) == 1 else f"{feed.record}s → {feed.target_title} "
                prefix = (f"{workers}w " if len(args.worker_counts) > 1 else "") + prefix
                batch, ids = run_batch(stack, feed, f"{prefix}cold", args.warmup, args, 1, watch)
                runs.append((batch, ids, feed))
                for n in range(args.batches):
                    seed = 100_000 * (n + 1)
                    batch, ids = run_batch(stack, feed, f"{prefix}steady {n + 1}", args.orders, args, seed, watch)
                    runs.append((batch, ids, feed))
            for batch, ids, feed in runs:
                if feed.lines is None:
                    continue
                lines = feed.lines(stack)
                counts = [lines[i] for i in ids if i in lines]
                batch.lines_per_order = round(sum(counts) / len(counts), 2) if counts else 0.0
    finally:
        embedded.stop()
    return [batch for batch, _, _ in runs]


# -- report --------------------------------------------------------------------------------------


def problems_of(batches: list[Batch]) -> list[str]:
    problems = []
    for batch in batches:
        f = batch.figures
        if f.created != f.orders:
            reasons = "; ".join(f"{reason} ({n})" for reason, n in f.reasons.items())
            problems.append(f"{batch.name}: {f.created} of {f.orders} orders created {f.outcomes} {reasons}".strip())
        posted = batch.sandbox_by_endpoint.get(batch.created_endpoint, 0)
        if posted != f.created:  # two workers booking one order (its created and updated events) twice
            problems.append(f"{batch.name}: {batch.target} received {posted} {batch.created_endpoint} for "
                            f"{f.created} {batch.record}s created")  # fmt: skip
    return problems


def worker_scaling(counts: list[int], steady: list[Batch]) -> dict[str, float]:
    """Each worker count's mean steady orders/s ÷ the first count's (`"1→2"`: 2 workers ÷ 1), when several ran."""
    if len(counts) < 2:
        return {}

    def mean_rate(workers: int) -> float:
        rates = [b.figures.orders_per_s for b in steady if b.name.startswith(f"{workers}w ")]
        return sum(rates) / len(rates) if rates else 0.0

    base = mean_rate(counts[0])
    return {f"{counts[0]}→{n}": round(mean_rate(n) / base, 3) if base else 0.0 for n in counts[1:]}


def report(
    args: argparse.Namespace, noop: ingest.WrkResult, batches: list[Batch], problems: list[str]
) -> dict[str, Any]:
    steady = [b for b in batches if not b.name.endswith("cold")]
    pacing = "one burst per batch" if args.rate <= 0 else f"placed at {args.rate:g} records/s"
    width = max(10, *(len(b.name) + 1 for b in batches))
    pair = "" if args.pair == WOO_EXACT else f"{PAIRS[args.pair].title}: "
    records = "orders" if args.pair == WOO_EXACT else "records"
    limits = "; Exact sandbox rate limits off" if any(s.kind == "exactonline" for s in PAIRS[args.pair].systems) else ""
    print()
    print(
        f"bench/e2e: {pair}{' then '.join(map(str, args.worker_counts))} worker(s), cold batch {args.warmup} "
        f"{records}, {args.batches} measured batch(es) of {args.orders} ({pacing}){limits}; the sandboxes "
        f"keep {args.shop_concurrency} webhook deliveries in flight at once"
    )
    head = (
        f"{'':{width}}{'orders/s' if records == 'orders' else 'recs/s':>9}{'events/s':>9}"
        f"{'recv→created p50/p99/max ms':>30}{'placed→created p50/p99 ms':>27}"
        f"{'calls/order' if records == 'orders' else 'calls/rec':>12}{'sandbox':>9}{'lines':>7}{'other CPU':>10}"
    )
    print(head)
    for b in batches:
        f = b.figures
        latency = " / ".join(f"{f.latency_ms[k]:,.0f}" for k in ("p50", "p99", "max"))
        placement = " / ".join(f"{f.placement_ms[k]:,.0f}" for k in ("p50", "p99"))
        print(
            f"{b.name:{width}}{f.orders_per_s:>9,.1f}{f.events_per_s:>9,.1f}{latency:>30}{placement:>27}"
            f"{f.calls_per_order:>12.3f}{b.sandbox_calls_per_order:>9.3f}{b.lines_per_order:>7.2f}"
            f"{b.cpu.get('other', 0):>9.0f}%"
        )
    noop_cpu = noop.cpu
    print(
        f"{'no-op':{width}}{noop.rps:>9,.0f} req/s (bench/ingest's no-op Starlette route, wrk -t1 -c64 "
        f"-d{noop.duration_s:.0f}s; p50 {noop.p50_ms:.2f} ms, p99 {noop.p99_ms:.2f} ms; "
        f"other processes {noop_cpu.get('other', 0):.0f}% of a core)"
    )
    ratios = {b.name: round(b.figures.orders_per_s / noop.rps, 5) if noop.rps else 0.0 for b in batches}
    for b in steady:
        print(
            f"ratio {b.name}: {b.figures.orders_per_s:,.1f} {b.record}s/s ÷ {noop.rps:,.0f} no-op req/s = "
            f"{ratios[b.name]:.4f} (1 : {1 / ratios[b.name] if ratios[b.name] else 0:,.0f}); "
            f"{b.figures.events_per_s:,.1f} deliveries/s = {b.figures.events_per_s / noop.rps:.4f}"
        )
    for b in batches:
        f = b.figures
        naive = f"; naive 4 + {b.lines_per_order:.2f} lines = {4 + b.lines_per_order:.2f}" if b.lines_per_order else ""
        verdict = ""
        if b.target_calls is not None and not b.name.endswith("cold"):
            verdict = f" — target ≤ {b.target_calls:g} {'MET' if f.calls_per_order <= b.target_calls else 'NOT MET'}"
        print(
            f"{b.target} calls, {b.name}: {f.calls} by Koppel's count ({f.calls_per_order:.3f} per created "
            f"{b.record}{naive}){verdict}; the sandbox answered {b.sandbox_calls} {b.sandbox_by_endpoint}"
        )
        if b.others:
            per = {name: round(n / f.created, 3) if f.created else 0.0 for name, n in b.others.items()}
            print(f"  the other sandboxes answered {b.others} ({per} per created {b.record})")
        print(f"  calls per event (topic outcome calls: events): {f.calls_by_event}")
    for b in batches:
        slow = ", ".join(f"{ms:,.0f} ms at +{at:g} s" for at, ms, _ in b.figures.slowest[:5])
        print(f"slowest creations, {b.name}: {slow}")
    for b in batches:
        f = b.figures
        print(
            f"{b.name}: {f.created} {b.record}s created in {f.window_s:.2f} s from the first delivery received; "
            f"the source delivered the batch's {f.events} events over {f.delivered_s:.2f} s "
            f"(placing took {b.placing_s:.2f} s)"
        )
    for b in batches:
        shown = {name: value for name, value in b.cpu.items() if not name.endswith(("_main", "_threads"))}
        cpu = ", ".join(f"{name} {value:.0f}" for name, value in shown.items())
        print(f"CPU % of one core, {b.name}: {cpu}")
        print(f"  CPU ms per created {b.record}: {b.cpu_ms_per_order}")
    scaling = worker_scaling(args.worker_counts, steady)
    for counts, factor in scaling.items():
        print(f"scaling, steady orders/s with {counts} workers: x{factor:.2f}")
    noisy = max([noop_cpu.get("other", 0)] + [b.cpu.get("other", 0) for b in batches])
    if noisy > NOISY_OTHER:
        print(f"warning: other processes used up to {noisy:.0f}% of a core during the run; figures are noisy")
    for problem in problems:
        print(f"FAILED: {problem}")
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "pair": args.pair,
            "workers": args.worker_counts,
            "shop_concurrency": args.shop_concurrency,
            "orders": args.orders,
            "warmup": args.warmup,
            "batches": args.batches,
            "rate": args.rate,
            "noop_duration_s": args.noop_duration,
            "exact_rate_limits": False,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "noop": asdict(noop),
        "batches": [asdict(b) for b in batches],
        "ratios": ratios,
        "worker_scaling": scaling,
        "target_calls_per_order": next((b.target_calls for b in batches if b.target_calls is not None), None),
        "problems": problems,
        "ok": not problems,
    }


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/e2e/run.sh",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pair", default=WOO_EXACT, help=f"the pair to measure: {', '.join(PAIRS)}")
    parser.add_argument("--workers", default="1", help="`koppel worker` processes; a list (1,2) runs a stack per count")
    parser.add_argument("--shop-concurrency", type=int, default=8,
                        help="webhook deliveries the sandboxes keep in flight at once (1: one at a time, as "
                             "WooCommerce's single queue runner)")  # fmt: skip
    parser.add_argument("--orders", type=int, default=500, help="orders per measured batch")
    parser.add_argument("--warmup", type=int, default=200, help="orders in the cold first batch")
    parser.add_argument("--batches", type=int, default=1, help="measured batches after the cold one")
    parser.add_argument("--rate", type=float, default=0, help="orders/s to place at; 0 places each batch at once")
    parser.add_argument("--noop-duration", type=float, default=10, help="seconds of the no-op wrk run")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for a batch to settle")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, Redis data)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write e2e-<timestamp>.json")
    args = parser.parse_args(argv)
    try:
        args.worker_counts = [int(part) for part in str(args.workers).split(",")]
    except ValueError:
        parser.error(f"--workers {args.workers!r} is not a number or a list of numbers (1,2)")
    args.workers = max(args.worker_counts)
    if min(args.worker_counts) < 1 or args.orders < 1 or args.warmup < 1 or args.batches < 1:
        parser.error("--workers, --orders, --warmup and --batches must be at least 1")
    if not 1 <= args.shop_concurrency <= MAX_CONCURRENCY:
        parser.error(f"--shop-concurrency must be 1 to {MAX_CONCURRENCY}")
    if args.pair not in PAIRS:
        parser.error(f"--pair {args.pair!r} is not a pair Koppel runs; choose one of {', '.join(PAIRS)}")
    if args.rate < 0 or args.noop_duration <= 0 or args.timeout <= 0:
        parser.error("--rate must be >= 0, --noop-duration and --timeout > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body(workdir: Path) -> tuple[dict[str, Any], int]:
        say(f"no-op ceiling first (bench/ingest's no-op route and wrk, {args.noop_duration:g} s)")
        noop = measure_noop(args, workdir)
        batches = [batch for workers in args.worker_counts for batch in run_stack(args, workdir, workers)]
        problems = problems_of(batches)
        return report(args, noop, batches, problems), 0 if not problems else 1

    return run_bench("e2e", body, results=args.results, keep=args.keep, say=say,
                     failures=(ingest.BenchFailure, RuntimeError), prefix=WORKDIR_PREFIX)  # fmt: skip

if __name__ == "__main__":
    sys.exit(main())
