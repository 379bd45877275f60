"""Stock, as the SPEC's Stock section describes it: update-only, matched on SKU.

1. `settings.stock_warehouse` (a warehouse or location code) chooses the one the shop sells from
   when the source keeps stock in several; other locations are skipped.
2. Only products that exist in the target are updated. A missing SKU is a warning naming it:
   outcome "skipped", not a failure; the miss is remembered for an hour, so a busy item the target
   does not sell costs one lookup an hour.
3. What is sent comes from the integration's stock mapping (default for a shop: quantity = available,
   rounded; the target manages stock for the item).
4. No write when the target already holds it (`Target.stock_change` says what would change).
A record the target deleted between read and write is looked up again, once.
"""

from __future__ import annotations

import logging

from connectors.contract import FlowResult
from gateway import keys
from gateway.errors import NotFound
from gateway.model import StockLevel
from workers.flows import Work

log = logging.getLogger("koppel.flows.stock")

MISSING_TTL = 3600


def run(work: Work) -> FlowResult:
    level = work.record("stock")
    assert isinstance(level, StockLevel)
    sku, target = level.sku, work.target
    warehouse = work.settings.get("stock_warehouse")
    if warehouse is not None and str(warehouse) != (level.location or ""):
        reason = f"warehouse {level.location or '(none)'} is not the shop's warehouse {warehouse}"
        return FlowResult("skipped", sku, calls=0, reason=reason)
    fields = work.mapped("stock", level, label=f"{work.envelope.source} stock of SKU {sku}")
    before = target.calls
    missing = keys.cache(target.system.id, "no-sku", sku.casefold())
    for attempt in (1, 2):
        current = None if work.connection.exists(missing) else target.find_stock(sku)
        if current is None:
            work.connection.set(missing, "1", ex=MISSING_TTL)
            log.warning("stock of SKU %s not sent: %s system %s has no product with it", sku, target.kind,
                        target.system.id)  # fmt: skip
            reason = f"SKU {sku} does not exist in {target.title}"
            return FlowResult("skipped", sku, calls=target.calls - before, reason=reason)
        change = target.stock_change(current, fields)
        if change is None:
            reason = f"{target.title} already has {current.quantity}"
            return FlowResult("skipped", sku, current.target_id, target.calls - before, reason)
        try:
            target.write_stock(current, fields)
            break
        except NotFound:
            target.forget("stock", sku)  # deleted since it was read: look the SKU up again, once
            if attempt == 2:
                raise
    assert current is not None and change is not None  # the loop returns, raises or breaks with both set
    old, new = change
    log.info("stock of SKU %s: %s → %s in %s %s", sku, old, new, target.kind, current.target_id)
    return FlowResult("updated", sku, current.target_id, target.calls - before, f"stock {old} → {new}")
