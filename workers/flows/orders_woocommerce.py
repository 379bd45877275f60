"""Order status Exact Online → WooCommerce: the SPEC's "order status written back to the source".

Polled `SalesOrderHeaders` (workers/pollers.py) carry `Status`, `YourRef` and `OrderID`, all this
flow needs: no Exact call. Orders WooCommerce → Exact are booked with `YourRef` = the shop's order
number, so that is how the shop order is found.

1. Exact's status is translated through the mapping table `order_statuses` (docs/datamapper.md),
   looked up by Exact's code ("21") and then by Koppel's name ("complete"); a key the table lacks
   takes the table's `default`, else Koppel's: 21 complete → `completed`, 45 cancelled →
   `cancelled`, 12 open / 20 partial → no change. An empty value means "no change". Statuses that
   change nothing cost no call at all.
2. Not a shop order → skipped (not failed): no `YourRef`, a `YourRef` that is not a number, or no
   WooCommerce order with that number. When the shop's orders come into this Exact division through
   exactly one WooCommerce → Exact integration that books sales orders (or the one named in
   `settings.shop_integration`), its ledger must agree: an order whose `YourRef` the ledger holds for
   another Exact order is a copy or a hand-typed reference, and is skipped. Negative answers from
   WooCommerce are remembered for an hour.
3. Idempotent: a shop order that already has the status (or one in `settings.keep_statuses`,
   default `refunded`) is left alone; otherwise `PUT /orders/{id} {"status": …}`.

WooCommerce's own order number is its post id unless a sequential-numbers plugin renumbers orders;
such numbers are not looked up (they read as "not a shop order").
"""

from __future__ import annotations

import logging
from typing import Any

from connectors.exactonline.normalise import ORDER_STATUS, normalise_sales_order
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.errors import WooCommerceNotFound, WooCommerceRequestError
from connectors.woocommerce.rest import Record
from gateway.config import Integration
from gateway.envelope import Envelope
from gateway.errors import PermanentError
from workers.flows import register
from workers.flows.common import Ledger, cached_tables
from workers.runtime import Runtime
from workers.woocommerce import woo_client

log = logging.getLogger("koppel.flows.order_status")

TABLE = "order_statuses"
DEFAULT_STATUSES = {"complete": "completed", "cancelled": "cancelled"}
"""Koppel's defaults, by the canonical status of an Exact order (21 complete, 45 cancelled)."""
KEEP_STATUSES = ("refunded",)
NOT_IN_SHOP_TTL = 3600


def shop_status(integration: Integration, rt: Runtime, code: str, status: str | None) -> str | None:
    """The WooCommerce status for Exact's `code` / canonical `status`, or None for "no change"."""
    table = cached_tables(rt, integration).get(TABLE)
    keys = [k for k in (code, status) if k]
    if table is not None:
        for key in keys:
            found, value = table.find(key)
            if found:
                return str(value) if value else None
        if table.has_default:
            return str(table.default) if table.default else None
    return DEFAULT_STATUSES.get(status or "")


def _shop_ledgers(rt: Runtime, integration: Integration) -> list[str]:
    """The WooCommerce → Exact integrations whose ledger says which Exact order a shop number became."""
    named = integration.settings.get("shop_integration")
    if named:
        return [str(named)]
    found = []
    for other in rt.config.integrations:
        endpoint = rt.config.endpoint(other.source)
        from_shop = endpoint is not None and endpoint.kind == "woocommerce"
        books_orders = other.settings.get("document_type", "sales_order") == "sales_order"
        if from_shop and other.target == integration.source and "orders" in other.flows and books_orders:
            found.append(other.id)
    return found


def _booked_as(rt: Runtime, integration: Integration, number: str) -> str | None:
    """The Exact order id the shop's ledger holds for `number` (one shop feeding the division), else None."""
    ledgers = _shop_ledgers(rt, integration)
    if len(ledgers) != 1:
        return None  # no shop integration, or several shops whose numbers may overlap
    return Ledger(rt.connection, ledgers[0]).created(number)


def _shop_order(rt: Runtime, integration: Integration, woo: WooCommerceClient, number: str) -> Record | None:
    """The WooCommerce order with this order number, or None (remembered for an hour)."""
    absent = f"koppel:cache:{integration.target}:no-order:{number}"
    if not number.isdigit() or rt.connection.exists(absent):
        return None
    try:
        record = woo.get_order(int(number))
    except WooCommerceNotFound:
        record = None
    if record is None or str(record.get("number", "")) != number:
        rt.connection.set(absent, "1", ex=NOT_IN_SHOP_TTL)
        return None
    return record


@register("orders", "woocommerce")
def order_status_to_woo(integration: Integration, envelope: Envelope, rt: Runtime) -> dict[str, Any]:
    if envelope.source != "exactonline":
        raise PermanentError(
            f"orders from {envelope.source} to WooCommerce are not supported yet "
            "(Koppel writes back the status of Exact Online orders)"
        )
    order = normalise_sales_order(envelope.payload)
    code = str(envelope.payload.get("Status") or "")
    label = f"{code} {ORDER_STATUS.get(code, '')}".strip() or "(none)"
    ref = order.custom_fields.get("your_ref", "")
    result: dict[str, Any] = {"number": order.number, "shop_order": ref, "calls": 0}
    wanted = shop_status(integration, rt, code, order.status)
    if wanted is None:
        return result | {"outcome": "skipped", "reason": f"Exact status {label} changes nothing in the shop"}
    if not ref:
        return result | {"outcome": "skipped", "reason": "not a shop order (no YourRef)"}
    booked = _booked_as(rt, integration, ref)
    if booked is not None and booked.lower() != order.id.lower():
        reason = f"not a shop order: shop order {ref} was booked as Exact order {booked}"
        return result | {"outcome": "skipped", "reason": reason}
    woo = woo_client(rt, integration.target)
    before = woo.calls
    try:
        shop = _shop_order(rt, integration, woo, ref)
        if shop is None:
            reason = f"not a shop order: WooCommerce has no order {ref}"
            return result | {"outcome": "skipped", "reason": reason, "calls": woo.calls - before}
        result["target_id"] = str(shop["id"])
        current = str(shop.get("status") or "")
        keep = integration.settings.get("keep_statuses", KEEP_STATUSES)
        if current == wanted or current in keep:
            why = f"already {current}" if current == wanted else f"is {current}, which Koppel leaves alone"
            log.info("Exact order %s: shop order %s %s; skipped", order.number, ref, why)
            return result | {"outcome": "skipped", "reason": f"shop order {ref} {why}", "calls": woo.calls - before}
        woo.update_order_status(int(shop["id"]), wanted)
    except WooCommerceRequestError as exc:
        raise PermanentError(f"Exact order {order.number} → shop order {ref} ({wanted}): {exc}") from exc
    log.info("Exact order %s (status %s): shop order %s %s → %s", order.number, label, ref, current, wanted)
    return result | {
        "outcome": "updated",
        "reason": f"status {current} → {wanted} (Exact status {label})",
        "calls": woo.calls - before,
    }


__all__ = ["order_status_to_woo", "shop_status"]
