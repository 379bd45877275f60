"""`koppel demo`: Koppel's main job on the embedded default — WooCommerce orders booked in Exact Online.

Everything runs on this machine (gateway/stack.py): an embedded Redis of the demo's own (data in
`<data dir>/redis`, emptied at start: the sandboxes start empty too), the WooCommerce and Exact
Online sandboxes, the gateway and a worker. Koppel is authorised
at Exact through its OAuth consent flow; Exact knows every item the shop sells except the gift
voucher (so some orders fail, naming it); the shop's webhooks point at the gateway. Then:

1. The shop takes a batch of realistic checkout orders; WooCommerce sends `order.created` and
   `order.updated` for each, signed as WooCommerce signs them; a progress bar follows the activity log.
2. A report: orders placed, deliveries accepted, created in Exact, skipped, failed with reasons, Exact
   API calls per order — and a cross-check against the Exact sandbox: one sales order per shop order.
3. The receiver turns away a forged delivery (401) and acknowledges a repeated one without a second job.
4. The missing item is added in Exact and the failed jobs are replayed (`koppel replay`): now booked.
5. A few orders are delivered in Exact; the Sync API poller picks that up and the shop's orders
   become `completed` (the `exact-to-shop` integration: order status written back).

Everything started is stopped at the end (and by the kernel if this process is killed).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.woocommerce.wordpress import php_json_encode, webhook_signature
from gateway.replay import failed_job_ids, replay
from gateway.stack import ENDPOINT, INTEGRATION, OrderOutcome, Stack, StackOptions

MISSING_SKU = "KOP-BON-25"  # the shop's gift voucher: not an item in Exact, so its orders fail
POLL_SECONDS = 5  # Exact's Sync API polled this often (each poll is an API call of Exact's budget)
DELIVERED = 5  # orders delivered in Exact at the end, their status written back to the shop


def run_demo(orders: int = 25, data_dir: Path = Path(".koppel/demo"), console: Console | None = None) -> int:
    console = console or Console(highlight=False)
    options = StackOptions(
        data_dir=data_dir, missing_skus=(MISSING_SKU,), queue="koppel-demo", writeback_poll_seconds=POLL_SECONDS
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
        return _run(stack, orders, console)
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
    console.print(f"shop     {stack.woo.url}  WooCommerce sandbox, webhooks → gateway")
    console.print(f"exact    {stack.exact.url}  Exact Online sandbox, authorised via OAuth")
    console.print(f"         every SKU of the shop is an item in Exact, except {MISSING_SKU}")
    console.print(f"gateway  {stack.gateway_url}  koppel serve; koppel worker pid {workers}")
    console.print(f"logs     {stack.log_dir}/\n")

    placed = stack.place_orders(orders)
    outcomes = _follow(stack, placed, f"{orders} orders placed in the shop", console)
    healthy = _report(stack, placed, outcomes, console)
    healthy &= _receiver_checks(stack, console)

    failed = [o for o in outcomes.values() if o.outcome == "failed"]
    if failed:
        console.print(f"\nAdding {MISSING_SKU} as an item in Exact, then replaying the failed jobs "
                      f"(koppel replay --integration {INTEGRATION})…")  # fmt: skip
        stack.add_exact_items([MISSING_SKU])
        config = stack.config()
        result = replay(stack.connection, config, failed_job_ids(stack.connection, config, INTEGRATION))
        console.print(f"requeued {len(result.requeued)} failed job(s)")
        again = _follow(stack, [o.order_id for o in failed], "replayed orders", console)
        booked = sum(o.outcome == "created" for o in again.values())
        console.print(f"after the replay: {booked} of {len(failed)} booked in Exact")
        healthy &= booked == len(failed)
        healthy &= _one_order_each(stack, placed, console)
    healthy &= _writeback(stack, placed, console)
    console.print("\n[green]done[/]: every order is accounted for" if healthy else "\n[red]something is off[/]")
    return 0 if healthy else 1


def _follow(stack: Stack, order_ids: list[str], label: str, console: Console) -> dict[str, OrderOutcome]:
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[calls]} Exact calls"))  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=len(order_ids), calls=0)

        def update(outcomes: dict[str, OrderOutcome]) -> None:
            done = sum(o.outcome != "pending" for o in outcomes.values())
            progress.update(task, completed=done, calls=sum(o.calls for o in outcomes.values()))

        outcomes = stack.settle(order_ids, timeout=300, progress=update)
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
