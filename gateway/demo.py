"""`koppel demo`: Koppel's main job on the embedded default — the whole WooCommerce ⇄ Exact Online pair.

Everything runs on this machine (gateway/stack.py): an embedded Redis of the demo's own (data in
`<data dir>/redis`, emptied at start: the sandboxes start empty too), the WooCommerce and Exact
Online sandboxes, the gateway and a worker. Koppel is authorised at Exact through its OAuth consent
flow. Then:

1. `koppel endpoints sync` makes the shop's webhooks (orders, products, customers) point at the gateway.
2. The shop's catalogue is published: WooCommerce sends `product.created` for every product and
   variation and the products flow creates them as Exact items — except the gift voucher, which
   `settings.product_filter` keeps out (a bookkeeper books vouchers on a G/L account).
3. The shop takes a batch of realistic checkout orders; a progress bar follows the activity log. A
   report: orders placed, deliveries accepted, created in Exact, skipped, failed with reasons, Exact
   API calls per order — and a cross-check against the Exact sandbox: one sales order per shop order.
4. The receiver turns away a forged delivery (401) and acknowledges a repeated one without a second job.
5. The voucher is added in Exact and the failed orders (those with a voucher) replayed: now booked.
6. A customer moves: the shop sends `customer.updated` and the Exact account gets the new address.
7. WooCommerce disables the order webhooks (as it does after failed deliveries); orders placed
   meanwhile are never delivered. `koppel endpoints sync` re-activates them and the reconciliation
   poll books the missed orders, each exactly once.
8. Stock is counted in Exact and a few orders delivered there; the Sync API poller brings the stock
   and the `completed` status back to the shop (the `exact-to-shop` integration).

Everything started is stopped at the end (and by the kernel if this process is killed).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.woocommerce.wordpress import php_json_encode, webhook_signature
from gateway.replay import failed_job_ids, replay
from gateway.stack import ENDPOINT, INTEGRATION, OrderOutcome, Stack, StackOptions

MISSING_SKU = "KOP-BON-25"  # the shop's gift voucher: kept out of Exact by the filter, so its orders fail
PRODUCT_FILTER = "type != 'virtual'"
POLL_SECONDS = 10  # Exact's Sync API polled this often (each poll is an API call of Exact's budget)
DELIVERED = 5  # orders delivered in Exact at the end, their status written back to the shop
MISSED = 3  # orders placed while the shop's order webhooks are disabled
COUNTED = {"KOP-TASSE-BL": 40, "KOP-TS-M": 12}  # a stock count in Exact, brought to the shop


def run_demo(
    orders: int = 25,
    data_dir: Path = Path(".koppel/demo"),
    console: Console | None = None,
    after: Callable[[Stack], None] | None = None,
) -> int:
    """The main job; 0 when every order is accounted for. `after(stack)` runs once it is done, before
    everything is stopped (bench/pair reads the Exact sandbox's call counts there)."""
    console = console or Console(highlight=False)
    options = StackOptions(
        data_dir=data_dir, queue="koppel-demo", writeback_poll_seconds=POLL_SECONDS, pair=True,
        product_filter=PRODUCT_FILTER,
    )
    with console.status("starting Redis, the sandboxes, the gateway and a worker…"):
        stack = Stack(options)
        try:
            stack.start()
        except Exception as exc:  # say what failed and stop what started
            stack.stop()
            console.print(f"[red]koppel: the demo could not start: {exc}[/] (logs in {stack.log_dir})")
            return 1
    try:
        code = _run(stack, orders, console)
        if after is not None:
            after(stack)
        return code
    except RuntimeError as exc:
        console.print(f"[red]koppel: {exc}[/] (logs in {stack.log_dir})")
        return 1
    finally:
        with console.status("stopping everything the demo started…"):
            stack.stop()


def _run(stack: Stack, orders: int, console: Console) -> int:
    assert stack.exact is not None and stack.woo is not None
    workers = ", ".join(str(w.pid) for w in stack.workers)
    console.print(f"redis    {stack.redis.describe() if stack.redis else stack.redis_url}")
    console.print(f"shop     {stack.woo.url}  WooCommerce sandbox (an empty shop)")
    console.print(f"exact    {stack.exact.url}  Exact Online sandbox, authorised via OAuth")
    console.print(f"gateway  {stack.gateway_url}  koppel serve; koppel worker pid {workers}")
    console.print(f"logs     {stack.log_dir}/\n")

    healthy = _endpoints(stack, console)
    healthy &= _catalogue(stack, console)
    placed = stack.place_orders(orders)
    outcomes = _follow(stack, placed, f"{orders} orders placed in the shop", console)
    healthy &= _report(stack, placed, outcomes, console)
    healthy &= _receiver_checks(stack, console)

    failed = [o for o in outcomes.values() if o.outcome == "failed"]
    stack.add_exact_items([MISSING_SKU])  # the bookkeeper makes the voucher an item (later orders book)
    if not failed:
        console.print(f"\nNo order had {MISSING_SKU}; it is added as an item in Exact all the same")
    else:
        console.print(f"\nAdding {MISSING_SKU} as an item in Exact, then replaying the failed jobs "
                      f"(koppel replay --integration {INTEGRATION})…")  # fmt: skip
        config = stack.config()
        result = replay(stack.connection, config, failed_job_ids(stack.connection, config, INTEGRATION))
        console.print(f"requeued {len(result.requeued)} failed job(s)")
        again = _follow(stack, [o.order_id for o in failed], "replayed orders", console)
        booked = sum(o.outcome == "created" for o in again.values())
        console.print(f"after the replay: {booked} of {len(failed)} booked in Exact")
        healthy &= booked == len(failed)
        healthy &= _one_order_each(stack, placed, console)
    healthy &= _customer_moves(stack, console)
    healthy &= _missed_webhooks(stack, console)
    healthy &= _stock(stack, console)
    healthy &= _writeback(stack, placed, console)
    console.print("\n[green]done[/]: every order is accounted for" if healthy else "\n[red]something is off[/]")
    return 0 if healthy else 1


def _endpoints(stack: Stack, console: Console) -> bool:
    """`koppel endpoints sync`: the shop's webhooks made for the integration's flows."""
    console.print("koppel endpoints sync")
    done = stack.sync_endpoints()
    for line in (done.stdout + done.stderr).strip().splitlines():
        console.print(f"  {line}", markup=False)
    return done.returncode == 0


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
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[calls]} Exact calls" if calls else ""))  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=len(order_ids), calls=0)

        def update(outcomes: dict[str, OrderOutcome]) -> None:
            done = sum(o.outcome != "pending" for o in outcomes.values())
            progress.update(task, completed=done, calls=sum(o.calls for o in outcomes.values()))

        outcomes = stack.settle(order_ids, timeout=300, progress=update, since=since)
    pending = [o.order_id for o in outcomes.values() if o.outcome == "pending"]
    if pending:
        raise RuntimeError(f"{len(pending)} order(s) had no outcome after 5 minutes: {', '.join(pending[:5])}")
    return outcomes


def _report(stack: Stack, placed: list[str], outcomes: dict[str, OrderOutcome], console: Console) -> bool:
    deliveries = [d for d in stack.deliveries() if str(d["resource_id"]) in set(placed)]
    accepted = sum(d["success"] for d in deliveries)
    counts = Counter(o.outcome for o in outcomes.values())
    created = [o for o in outcomes.values() if o.outcome == "created"]
    calls = sum(o.calls for o in created)
    table = Table(title="WooCommerce → Exact Online", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    table.add_row("orders placed in the shop", str(len(placed)), "")
    table.add_row("webhook deliveries accepted", f"{accepted}/{len(deliveries)}", "order.created + order.updated")
    table.add_row("created in Exact", str(counts["created"]), "")
    table.add_row("skipped", str(counts["skipped"]), "status not synced / already in Exact")
    table.add_row("failed", str(counts["failed"]), "kept in RQ's failed registry")
    for reason, count in Counter(o.reason for o in outcomes.values() if o.outcome == "failed").most_common():
        table.add_row("", f"{count} x", reason)
    if created:
        table.add_row("Exact API calls per order", f"{calls / len(created):.2f}", "1 once the customer is known")
    console.print()
    console.print(table)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
