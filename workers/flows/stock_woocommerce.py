"""Stock Exact Online → WooCommerce, as the SPEC's Stock section describes it.

Polled `StockPositions` (workers/pollers.py): one position per item and warehouse, `ItemCode` = the
SKU. Exact quirks: `FreeStock` is what can still be sold (on hand minus reservations); a division
with several warehouses has several positions per item, so `settings.stock_warehouse` (a warehouse
code) chooses the one the shop sells from — without it every position is written as it comes.

1. Only products that exist in WooCommerce are updated, matched on SKU (variations included,
   `GET /products?sku=`). A missing SKU is a warning naming it: outcome "skipped", not a failure;
   the miss is remembered for an hour, so a busy item the shop does not sell costs one lookup an hour.
2. The quantity comes from the integration's stock mapping (default: `stock_quantity` = available,
   rounded; `manage_stock` = true; transforms/defaults/stock/woocommerce/stock.toml).
3. No write when WooCommerce already has that quantity (and stock management setting).
4. SKU → product (and variation) id is cached; a cached id WooCommerce no longer knows (404), or
   whose SKU changed, is dropped and the SKU looked up again.
"""

from __future__ import annotations

import logging
from typing import Any

from connectors.exactonline.normalise import normalise_stock_position
from connectors.woocommerce.client import Stock, WooCommerceClient
from connectors.woocommerce.errors import WooCommerceNotFound, WooCommerceRequestError
from gateway.config import Integration
from gateway.envelope import Envelope
from gateway.errors import PermanentError
from workers.flows import register
from workers.flows.common import cached_mapping
from workers.runtime import Runtime
from workers.woocommerce import woo_client

log = logging.getLogger("koppel.flows.stock")

ID_CACHE_TTL = 24 * 3600
MISSING_TTL = 3600


class _Ids:
    """SKU → "product_id" or "product_id:variation_id" per shop, and the SKUs the shop lacks."""

    def __init__(self, rt: Runtime, system_id: str) -> None:
        self.connection = rt.connection
        self.key = f"koppel:cache:{system_id}:stock_ids"
        self.prefix = f"koppel:cache:{system_id}:no-sku:"

    def get(self, sku: str) -> tuple[int, int | None] | None:
        raw = self.connection.hget(self.key, sku.casefold())
        if not raw:
            return None
        product, _, variation = raw.decode().partition(":")
        return int(product), int(variation) if variation else None

    def put(self, sku: str, stock: Stock) -> None:
        value = f"{stock.product_id}:{stock.variation_id}" if stock.variation_id else str(stock.product_id)
        self.connection.hset(self.key, sku.casefold(), value)
        self.connection.expire(self.key, ID_CACHE_TTL)

    def forget(self, sku: str) -> None:
        self.connection.hdel(self.key, sku.casefold())

    def missing(self, sku: str) -> bool:
        return bool(self.connection.exists(self.prefix + sku.casefold()))

    def mark_missing(self, sku: str) -> None:
        self.connection.set(self.prefix + sku.casefold(), "1", ex=MISSING_TTL)


def _current(ids: _Ids, woo: WooCommerceClient, sku: str) -> Stock | None:
    """WooCommerce's stock of the product or variation with this SKU (cached id first), or None."""
    cached = ids.get(sku)
    if cached is not None:
        product_id, variation_id = cached
        try:
            stock = woo.get_stock(product_id, variation_id=variation_id)
        except WooCommerceNotFound:
            stock = None
        if stock is not None and stock.sku.casefold() == sku.casefold():
            return stock
        ids.forget(sku)  # deleted, or the SKU moved to another product: look it up again
    if ids.missing(sku):
        return None
    record = woo.find_product_by_sku(sku)
    if record is None:
        ids.mark_missing(sku)
        return None
    stock = Stock.of(record)
    ids.put(sku, stock)
    return stock


def _target_id(stock: Stock) -> str:
    return f"{stock.product_id}/{stock.variation_id}" if stock.variation_id else str(stock.product_id)


def _write(woo: WooCommerceClient, stock: Stock, fields: dict[str, Any]) -> None:
    if stock.variation_id is not None:
        woo.update_variation(stock.product_id, stock.variation_id, fields)
    else:
        woo.update_product(stock.product_id, fields)


@register("stock", "woocommerce")
def stock_to_woo(integration: Integration, envelope: Envelope, rt: Runtime) -> dict[str, Any]:
    if envelope.source != "exactonline":
        raise PermanentError(f"stock from {envelope.source} to WooCommerce is not supported yet")
    level = normalise_stock_position(envelope.payload)
    sku = level.sku
    result: dict[str, Any] = {"number": sku, "calls": 0}
    warehouse = integration.settings.get("stock_warehouse")
    if warehouse is not None and str(warehouse) != (level.location or ""):
        reason = f"warehouse {level.location or '(none)'} is not the shop's warehouse {warehouse}"
        return result | {"outcome": "skipped", "reason": reason}
    fields = cached_mapping(rt, integration, "stock", "woocommerce").apply(level, label=f"Exact stock of SKU {sku}")
    quantity = fields.get("stock_quantity")
    woo = woo_client(rt, integration.target)
    before = woo.calls
    ids = _Ids(rt, integration.target)
    try:
        for attempt in (1, 2):
            stock = _current(ids, woo, sku)
            if stock is None:
                log.warning("stock of SKU %s not sent: no WooCommerce product or variation has it", sku)
                reason = f"SKU {sku} does not exist in WooCommerce"
                return result | {"outcome": "skipped", "reason": reason, "calls": woo.calls - before}
            result["target_id"] = _target_id(stock)
            managed = fields.get("manage_stock", stock.manage_stock)
            if stock.stock_quantity == quantity and stock.manage_stock == managed:
                reason = f"WooCommerce already has {quantity}"
                return result | {"outcome": "skipped", "reason": reason, "calls": woo.calls - before}
            try:
                _write(woo, stock, fields)
                break
            except WooCommerceNotFound:
                ids.forget(sku)  # deleted since it was read: look the SKU up again, once
                if attempt == 2:
                    raise
    except WooCommerceRequestError as exc:
        raise PermanentError(f"stock of SKU {sku}: {exc}") from exc
    log.info("stock of SKU %s: %s → %s in WooCommerce %s", sku, stock.stock_quantity, quantity, result["target_id"])
    return result | {
        "outcome": "updated",
        "reason": f"stock {stock.stock_quantity} → {quantity}",
        "calls": woo.calls - before,
    }


__all__ = ["stock_to_woo"]
