"""`koppel demo`: Koppel's main job on the embedded default — the whole WooCommerce ⇄ Exact Online pair;
with `--pair`, another pair Koppel is sold for, on its sandboxes, with the same report (gateway/pairs.py).

The main job (`--pair woocommerce-exactonline`, the default):

Everything runs on this machine (gateway/stack.py): an embedded Redis of the demo's own (data in
`<data dir>/redis`; what an earlier run left in the data dir is removed at start: the sandboxes start
empty too), the WooCommerce and Exact
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

`--pair winstore-exactonline`: Winstore's catalogue becomes Exact items (Winstore polled), orders rung up
in Winstore are booked in Exact, sales orders entered in Exact are booked in Winstore (Exact's Sync API
polled), Winstore's orders delivered in Exact get status completed in Winstore, and a stock count in Exact
becomes Winstore's level. `--pair winstore-businesscentral`: `koppel endpoints sync` makes Business
Central's subscriptions (the receiver answers BC's handshake), Winstore's catalogue becomes BC items,
Winstore's customers BC customers, orders rung up in Winstore BC sales orders; some of those are released
in BC and Winstore's status follows, sales orders entered in BC reach Winstore through BC's
notifications, and inventory posted in BC becomes Winstore's level. `--pair squarespace-exactonline`:
`koppel endpoints sync` makes Squarespace's webhook subscriptions, checkouts become Exact sales orders at
net prices with VAT codes, checkouts whose notifications are lost are found by the reconciliation poll,
and orders delivered in Exact are fulfilled in Squarespace. Each phase reports what was entered,
created, updated, skipped and failed (with reasons), the target's API calls per record, and a
cross-check in the target's sandbox (gateway/pairs.py describes the pairs).

Everything started is stopped at the end (and by the kernel if this process is killed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from gateway.pairs import WOO_EXACT, Pair, pair_named
from gateway.phases import MISSED, MISSING_SKU, POLL_SECONDS, PRODUCT_FILTER, Run
from gateway.stack import Stack, StackOptions

__all__ = ["MISSED", "MISSING_SKU", "run_demo"]


def options_for(pair: Pair, data_dir: Path) -> StackOptions:
    """The stack's options for a pair's demo: the main job's whole pair, or another pair as described."""
    if pair.name == WOO_EXACT:
        return StackOptions(data_dir=data_dir, queue="koppel-demo", writeback_poll_seconds=POLL_SECONDS, pair=True,
                            product_filter=PRODUCT_FILTER)  # fmt: skip
    return StackOptions(data_dir=data_dir, queue="koppel-demo")


def run_demo(
    orders: int = 25,
    data_dir: Path = Path(".koppel/demo"),
    console: Console | None = None,
    after: Callable[[Stack], None] | None = None,
    pair: str = WOO_EXACT,
) -> int:
    """A pair's demo (default: the main job); 0 when every record is accounted for. `orders`: the records
    each phase enters. `after(stack)` runs once it is done, before everything is stopped (bench/pair reads
    the Exact sandbox's call counts there). ValueError for an unknown pair."""
    chosen = pair_named(pair)
    console = console or Console(highlight=False)
    with console.status("starting Redis, the sandboxes, the gateway and a worker…"):
        stack = Stack(options_for(chosen, data_dir), chosen)
        try:
            stack.start()
        except Exception as exc:  # say what failed and stop what started
            stack.stop()
            console.print(f"[red]koppel: the demo could not start: {exc}[/] (logs in {stack.log_dir})")
            return 1
    try:
        code = _run(Run(stack, console, orders))
        if after is not None:
            after(stack)
        return code
    except RuntimeError as exc:
        console.print(f"[red]koppel: {exc}[/] (logs in {stack.log_dir})")
        return 1
    finally:
        with console.status("stopping everything the demo started…"):
            stack.stop()


def _run(run: Run) -> int:
    stack, console = run.stack, run.console
    workers = ", ".join(str(w.pid) for w in stack.workers)
    console.print(f"{stack.pair.title}: {', '.join(p.name for p in stack.pair.phases)}")
    console.print(f"redis    {stack.redis.describe() if stack.redis else stack.redis_url}")
    for system in stack.pair.systems:
        console.print(f"{system.id:8} {stack.url(system.id)}  {system.title} sandbox{_remark(system.id)}")
    console.print(f"gateway  {stack.gateway_url}  koppel serve; koppel worker pid {workers}")
    console.print(f"logs     {stack.log_dir}/\n")
    healthy = True
    for phase in stack.pair.phases:
        healthy &= phase.run(run)
    console.print("\n[green]done[/]: every order is accounted for" if healthy else "\n[red]something is off[/]")
    return 0 if healthy else 1


def _remark(system_id: str) -> str:
    return {"shop": " (an empty shop)", "exact": ", authorised via OAuth", "asperion": ", authorised via OAuth",
            "bc": ", its token endpoint signing Koppel in (client credentials)",
            "sq": " (a site with the shop's products; Koppel's OAuth token)"}.get(system_id, "")  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
