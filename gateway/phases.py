"""The phases `koppel demo` runs (gateway/pairs.py says which pair runs which): each drives the systems'
sandboxes as their users would, follows what Koppel does through the activity log, prints its part of
the report and answers whether everything is accounted for.

The WooCommerce ⇄ Exact Online phases (the main job) are here; a phase that follows records through one
flow is built from a `Feed` by `gateway.pairs.feed_phase`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.woocommerce.wordpress import php_json_encode, webhook_signature
from gateway.replay import failed_job_ids, replay
from gateway.stack import ENDPOINT, INTEGRATION, OrderOutcome, Stack

MISSING_SKU = "KOP-BON-25"  # the shop's gift voucher: kept out of Exact by the filter, so its orders fail
PRODUCT_FILTER = "type != 'virtual'"
POLL_SECONDS = 10  # Exact's Sync API polled this often (each poll is an API call of Exact's budget)
DELIVERED = 5  # orders delivered in Exact at the end, their status written back to the shop
MISSED = 3  # orders placed while the shop's order webhooks are disabled
COUNTED = {"KOP-TASSE-BL": 40, "KOP-TS-M": 12}  # a stock count in Exact, brought to the shop


@dataclass
class Run:
    """What a pair's phases share: the stack, the console, how many records a phase enters, and notes
    one phase leaves for a later one (the main job's orders, for the write-back)."""

    stack: Stack
    console: Console
    records: int
    notes: dict[str, Any] = field(default_factory=dict)


def report_table(console: Console, title: str, rows: Iterable[tuple[str, str, str]]) -> None:
    """A phase's report: label, figure, remark."""
    table = Table(title=title, title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    for row in rows:
        table.add_row(*row)
    console.print()
    console.print(table)


def follow(
    run: Run, ids: list[str], label: str, *, integration: str | None = None, calls: str = "", since: float | None = None
) -> dict[str, OrderOutcome]:
    """A progress bar over the records' outcomes (and the target's calls, titled `calls`) until all are decided
    and the pipeline is idle; beside it what is still being waited for: the jobs left (queued, running,
    waiting to retry) and a target's used-up API budget, named with the time to its reset."""
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn(f"{{task.fields[calls]}} {calls} calls" if calls else ""),
               TextColumn("[dim]{task.fields[waiting]}"))  # fmt: skip
    stack = run.stack
    with Progress(*columns, console=run.console, transient=False) as progress:
        task = progress.add_task(label, total=len(ids), calls=0, waiting="")
        looked = 0.0

        def update(outcomes: dict[str, OrderOutcome]) -> None:
            nonlocal looked
            done = sum(o.outcome != "pending" for o in outcomes.values())
            progress.update(task, completed=done, calls=sum(o.calls for o in outcomes.values()))
            if time.monotonic() - looked >= 0.5:  # what is left, twice a second
                looked = time.monotonic()
                progress.update(task, waiting=waiting_for(stack))

        outcomes = stack.settle(ids, timeout=300, progress=update, since=since, integration=integration)
        progress.update(task, waiting="")
    pending = [o.order_id for o in outcomes.values() if o.outcome == "pending"]
    if pending:
        raise RuntimeError(f"{len(pending)} record(s) had no outcome after 5 minutes: {', '.join(pending[:5])}")
    return outcomes


def waiting_for(stack: Stack) -> str:
    """What the pipeline is still busy with, for a progress bar: "waiting: 3 queued, 1 running; Exact's
    minutely API budget used up, resets in 41 s"; empty when nothing is left."""
    jobs = stack.backlog().describe()
    return f"waiting: {'; '.join([jobs, *stack.waits()])}" if jobs else ""


def sync_endpoints(run: Run) -> bool:
    """`koppel endpoints sync`: the webhooks (a shop's) or subscriptions (Business Central's) the
    integrations' flows need, made to point at the gateway."""
    run.console.print("koppel endpoints sync")
    done = run.stack.sync_endpoints()
    for line in (done.stdout + done.stderr).strip().splitlines():
        run.console.print(f"  {line}", markup=False)
    return done.returncode == 0


# -- WooCommerce ⇄ Exact Online ---------------------------------------------------------------------------


def woo_orders(run: Run) -> bool:
    """A batch of checkout orders followed to Exact and reported; the receiver's checks; the voucher added
    in Exact and the orders that failed on it replayed."""
    stack, console = run.stack, run.console
    placed = stack.place_orders(run.records)
    run.notes["placed"] = placed
    outcomes = _follow(stack, placed, f"{run.records} orders placed in the shop", console)
    healthy = _report(stack, placed, outcomes, console)
    healthy &= _receiver_checks(stack, console)
    failed = [o for o in outcomes.values() if o.outcome == "failed"]
    stack.add_exact_items([MISSING_SKU])  # the bookkeeper makes the voucher an item (later orders book)
    if not failed:
        console.print(f"\nNo order had {MISSING_SKU}; it is added as an item in Exact all the same")
        return healthy
    console.print(f"\nAdding {MISSING_SKU} as an item in Exact, then replaying the failed jobs "
                  f"(koppel replay --integration {INTEGRATION})…")  # fmt: skip
    config = stack.config()
    since = time.time()  # the replay's outcomes only: the failures before it are what it repairs
    result = replay(stack.connection, config, failed_job_ids(stack.connection, config, INTEGRATION))
    console.print(f"requeued {len(result.requeued)} failed job(s): one per delivery or merged pair, "
                  f"{_per_order(len(result.requeued), len(failed))} of the {len(failed)} failed order(s)")  # fmt: skip
    again = _follow(stack, [o.order_id for o in failed], "replayed orders", console, since=since)
    booked = sum(o.outcome == "created" for o in again.values())
    console.print(f"after the replay: {booked} of {len(failed)} order(s) booked in Exact, one sales order each")
    return healthy and booked == len(failed) and _one_order_each(stack, placed, console)


def _per_order(jobs: int, orders: int) -> str:
    """How the failed jobs relate to the failed orders: "2 each (order.created and order.updated)"; an order's
    two events that waited in the inbox together are one job (workers/inbox.py)."""
    if jobs == 2 * orders:
        return "2 each (order.created and order.updated)"
    if jobs == orders:
        return "1 each (order.created and order.updated merged into one job)"
    return f"{jobs / orders:.1f} on average (an order's two events are one job when they waited together)" if orders \
        else "none"  # fmt: skip


def woo_writeback(run: Run) -> bool:
    return _writeback(run.stack, list(run.notes.get("placed", [])), run.console)


def woo_endpoints(run: Run) -> bool:
    return sync_endpoints(run)


def woo_catalogue(run: Run) -> bool:
    return _catalogue(run.stack, run.console)


def woo_customer_moves(run: Run) -> bool:
    return _customer_moves(run.stack, run.console)


def woo_missed_webhooks(run: Run) -> bool:
    return _missed_webhooks(run.stack, run.console)


def woo_stock(run: Run) -> bool:
    return _stock(run.stack, run.console)


def _catalogue(stack: Stack, console: Console) -> bool:
    """The shop's catalogue published: every product and variation an Exact item, but the voucher."""
    ids = stack.seed_shop_products()
    _follow(stack, ids, f"{len(ids)} products and variations published in the shop", console, calls=False)
    skus = stack.shop_skus()
    items = {str(row.get("Code")) for row in stack.exact_rows("logistics/Items")}
    made = [sku for sku in skus if sku in items]
    left_out = [sku for sku in skus if sku not in items]
    console.print(f"{len(made)} of the shop's {len(skus)} SKUs are now items in Exact; left out by "
                  f"settings.product_filter ({PRODUCT_FILTER}): {', '.join(left_out) or 'none'}\n")  # fmt: skip
    return left_out == [MISSING_SKU]


def _customer_moves(stack: Stack, console: Console) -> bool:
    """A registered customer moves; the shop's customer.updated reaches the Exact account."""
    client = stack.woo_client()
    customer = next(iter(client.customers(per_page=1)), None)
    if customer is None:  # every order so far a guest's: someone registers in the shop
        billing = {"first_name": "Anouk", "last_name": "de Vries", "address_1": "Utrechtseweg 1", "postcode": "3811 NA",
                   "city": "Amersfoort", "country": "NL", "email": "anouk@example.nl"}  # fmt: skip
        customer = client.create_customer({"email": billing["email"], "first_name": "Anouk", "last_name": "de Vries",
                                           "billing": billing})  # fmt: skip
    email = str(customer["email"])
    billing = {**customer["billing"], "address_1": "Nieuwe Gracht 12", "postcode": "3512 LT", "city": "Utrecht",
               "country": "NL"}  # fmt: skip
    console.print(f"\nCustomer {customer['id']} moves to Utrecht in the shop; WooCommerce sends customer.updated…")
    client.update_customer(int(customer["id"]), {"billing": billing})
    deadline = time.monotonic() + 60
    city = None
    while time.monotonic() < deadline:
        accounts = stack.exact_rows("crm/Accounts")
        account = next((a for a in accounts if str(a.get("Email", "")).lower() == email.lower()), None)
        city = account.get("City") if account else None
        if city == "Utrecht":
            break
        time.sleep(0.3)
    console.print(f"the Exact account of customer {customer['id']} now says: {city or '(not found)'}")
    return city == "Utrecht"


def _missed_webhooks(stack: Stack, console: Console) -> bool:
    """Order webhooks disabled, orders placed meanwhile; `endpoints sync` and the reconciliation poll repair it."""
    hooks = stack.set_webhook_status("order.", "disabled")
    console.print(f"\nWooCommerce disables the order webhooks ({', '.join(hooks)}), as it does after 7 failed "
                  f"deliveries in a row; {MISSED} orders are placed meanwhile and never delivered")  # fmt: skip
    since = time.time()
    missed = stack.place_orders(MISSED)
    console.print("koppel endpoints sync")
    done = stack.sync_endpoints()
    for line in (done.stdout + done.stderr).strip().splitlines():
        console.print(f"  {line}", markup=False)
    outcomes = _follow(stack, missed, "missed orders, found by the reconciliation poll", console, since=since)
    booked = sum(o.outcome == "created" for o in outcomes.values())
    console.print(f"{booked} of {MISSED} missed orders booked in Exact (orders {', '.join(missed)})")
    return done.returncode == 0 and booked == MISSED and _one_order_each(stack, missed, console)


def _stock(stack: Stack, console: Console) -> bool:
    """A stock count in Exact reaches the shop through the Sync API poller and the stock flow."""
    console.print(f"\nStock counted in Exact ({', '.join(f'{sku}: {n}' for sku, n in COUNTED.items())}); the "
                  f"Sync API poller (every {POLL_SECONDS} s) brings what is available to the shop…")  # fmt: skip
    expected = {sku: stack.set_exact_stock(sku, quantity) for sku, quantity in COUNTED.items()}
    client = stack.woo_client()
    deadline = time.monotonic() + 60
    shop: dict[str, object] = {}
    while time.monotonic() < deadline:
        shop = {sku: getattr(client.stock_by_sku(sku), "stock_quantity", None) for sku in expected}
        if shop == expected:
            break
        time.sleep(0.5)
    for sku, available in expected.items():
        console.print(f"  {sku}: available in Exact {available}, in the shop {shop.get(sku)}")
    return shop == expected


def _follow(
    stack: Stack, order_ids: list[str], label: str, console: Console, *, calls: bool = True, since: float | None = None
) -> dict[str, OrderOutcome]:
    return follow(Run(stack, console, len(order_ids)), order_ids, label, calls="Exact" if calls else "", since=since)


def _report(stack: Stack, placed: list[str], outcomes: dict[str, OrderOutcome], console: Console) -> bool:
    """The batch per order (what became of it) and per delivery (each order arrives twice: WooCommerce
    sends order.created and then order.updated; each delivery is one job, or both one when they waited in
    the inbox together, so a failed order is one or two failed jobs)."""
    deliveries = [d for d in stack.deliveries() if str(d["resource_id"]) in set(placed)]
    accepted = sum(d["success"] for d in deliveries)
    counts = Counter(o.outcome for o in outcomes.values())
    created = [o for o in outcomes.values() if o.outcome == "created"]
    calls = sum(o.calls for o in created)
    config = stack.config()
    failed_jobs = len(failed_job_ids(stack.connection, config, INTEGRATION)) if counts["failed"] else 0
    per_order = f"{len(deliveries) / len(placed):g} per order: order.created + order.updated" if placed else ""
    rows = [
        ("orders placed in the shop", str(len(placed)), ""),
        ("webhook deliveries accepted", f"{accepted}/{len(deliveries)}", per_order),
        ("orders created in Exact", str(counts["created"]), "one sales order each"),
        ("orders skipped", str(counts["skipped"]), "status not synced / already in Exact"),
        ("orders failed", str(counts["failed"]),
         f"their {failed_jobs} job(s) kept in RQ's failed registry" if counts["failed"] else ""),
    ]  # fmt: skip
    for reason, count in Counter(o.reason for o in outcomes.values() if o.outcome == "failed").most_common():
        rows.append(("", f"{count} x", reason))
    if created:
        rows.append(("Exact API calls per order", f"{calls / len(created):.2f}", "1 once the customer is known"))
    report_table(console, "WooCommerce → Exact Online", rows)
    return accepted == len(deliveries) and counts["pending"] == 0 and _one_order_each(stack, placed, console)


def _writeback(stack: Stack, placed: list[str], console: Console) -> bool:
    """Deliver a few orders in Exact; the poller must bring `completed` back to the shop."""
    booked = [o for o in stack.outcomes(placed).values() if o.outcome == "created"][:DELIVERED]
    if not booked:
        return True
    console.print(f"\nDelivering {len(booked)} orders in Exact; the Sync API poller (every {POLL_SECONDS} s) "
                  "writes their status back to the shop…")  # fmt: skip
    stack.deliver_in_exact([o.number for o in booked])
    ids = [o.order_id for o in booked]
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(), TimeElapsedColumn())
    deadline = time.monotonic() + 120
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("shop orders completed", total=len(ids))
        while True:
            done = sum(status == "completed" for status in stack.shop_statuses(ids).values())
            progress.update(task, completed=done)
            if done == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    console.print(f"{done} of {len(ids)} shop orders now 'completed' (orders {', '.join(ids)})")
    return done == len(ids)


def _one_order_each(stack: Stack, placed: list[str], console: Console) -> bool:
    """Cross-check in the Exact sandbox: no shop order booked twice."""
    refs = Counter(
        str(record.get("YourRef"))
        for division in stack.exact_state()["entities"].values()
        for record in division.get("salesorder/SalesOrders", [])
    )
    doubles = [ref for ref, n in refs.items() if n > 1]
    if doubles:
        console.print(f"[red]booked more than once in Exact: {', '.join(doubles)}[/]")
    return not doubles


def _receiver_checks(stack: Stack, console: Console) -> bool:
    """A delivery WooCommerce already made is acknowledged without a second job; a forged one is refused."""
    order = next(iter(stack.woo_client().orders(per_page=1)))
    body = php_json_encode(order)
    url = f"{stack.gateway_url}/webhooks/{ENDPOINT}"
    headers = {"content-type": "application/json", "x-wc-webhook-topic": "order.updated",
               "x-wc-webhook-resource": "order", "x-wc-webhook-event": "updated",
               "x-wc-webhook-signature": webhook_signature(body, stack.env["KOPPEL_STACK_WC_SECRET"])}  # fmt: skip
    repeat = stack.http.post(url, content=body, headers=headers)
    forged = stack.http.post(url, content=body.replace(b'"processing"', b'"refunded"', 1), headers=headers)
    console.print("\nreceiver checks")
    console.print(f"  order {order['id']} delivered again, unchanged        {repeat.status_code}  "
                  f"{repeat.json().get('duplicates', 0)} duplicate, no second job")  # fmt: skip
    console.print(
        f"  the same delivery with a tampered body     {forged.status_code}  {forged.json().get('error', '')}"
    )
    return repeat.json().get("duplicates") == 1 and forged.status_code == 401
