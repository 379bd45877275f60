"""`POST /orders` of the WooCommerce sandbox: an order created through the REST API, as WooCommerce core
(WC_REST_Orders_Controller) makes it.

* A line names its product by `sku` (looked up first), else `product_id` without `variation_id`, else
  `variation_id`; none of them is 400 `woocommerce_rest_required_product_reference`. A product id that
  does not exist is not refused (core leaves the line without a product); the sandbox does the same.
* Line `subtotal` / `total` (excl. tax, text) when given, else the product's price times quantity (the shop's
  prices include tax: the tax is taken out). Taxes are calculated per line from the rates of the
  shipping address's country (else the billing one's; else the shop's base country, NL) and the
  product's tax class; shipping and fee lines at the standard rate. Totals follow (calculate_totals).
* `customer_id` must be an existing customer (or 0, a guest): else 400 `woocommerce_rest_invalid_customer_id`.
* `status` defaults to "pending"; `set_paid` marks the order paid and, without a status, processing.
  Stock is reduced when the order is created processing, completed or on-hold (WooCommerce reduces it
  on the transition from pending). `created_via` is "rest-api". `order.created` fires.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from connectors.woocommerce.sandbox import shapes
from connectors.woocommerce.sandbox.seed import TAX_RATES, money
from connectors.woocommerce.sandbox.store import ORDER_STATUSES, Row, Store, WCError, invalid_param, validated

BASE_COUNTRY = "NL"
_FIELDS: dict[str, Any] = {
    "status": ORDER_STATUSES, "currency": str, "customer_id": int, "customer_note": str, "billing": dict,
    "shipping": dict, "payment_method": str, "payment_method_title": str, "transaction_id": str,
    "meta_data": list, "set_paid": bool, "line_items": list, "shipping_lines": list, "fee_lines": list,
}  # fmt: skip
_CENT = Decimal("0.01")


def _amount(value: Any, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise invalid_param({name: f"{name} is not a valid amount."}) from None


def _rate(country: str, tax_class: str) -> tuple[int, int, str] | None:
    rates = TAX_RATES.get(country)
    return None if rates is None else rates.get(tax_class) or rates.get("")


def _taxed(total: Decimal, rate: tuple[int, int, str] | None) -> tuple[Decimal, list[Row]]:
    if rate is None:
        return Decimal(0), []
    tax = (total * rate[1] / 100).quantize(_CENT, ROUND_HALF_UP)
    return tax, [{"id": rate[0], "total": money(tax), "subtotal": ""}]


def _product(store: Store, item: Mapping[str, Any], index: int) -> Row | None:
    where = f"line_items[{index}]"
    if item.get("sku"):
        return store.sku_owner(str(item["sku"]))
    product_id, variation_id = int(item.get("product_id") or 0), int(item.get("variation_id") or 0)
    if not product_id and not variation_id:
        raise WCError(400, "woocommerce_rest_required_product_reference", f"Product ID or SKU is required ({where}).")
    found = store.products.get(variation_id or product_id)
    return found if found is not None and found["status"] != "trash" else None


def _line(store: Store, item: Any, index: int, country: str) -> Row:
    if not isinstance(item, Mapping):
        raise invalid_param({"line_items": f"line_items[{index}] is not of type object."})
    product = _product(store, item, index)
    try:
        quantity = int(item.get("quantity", 1))
    except (TypeError, ValueError):
        raise invalid_param({"line_items": f"line_items[{index}][quantity] is not of type integer."}) from None
    tax_class = str(item.get("tax_class", product["tax_class"] if product else ""))
    rate = _rate(country, tax_class)
    total = _amount(item.get("total"), f"line_items[{index}][total]")
    if total is None and product is not None:
        price = product["sale_price"] or product["regular_price"] or "0"
        gross = Decimal(price) * quantity
        total = (gross * 100 / (100 + (rate[1] if rate else 0))).quantize(_CENT, ROUND_HALF_UP)
    total = total if total is not None else Decimal(0)
    subtotal = _amount(item.get("subtotal"), f"line_items[{index}][subtotal]") or total
    total_tax, taxes = _taxed(total, rate)
    subtotal_tax, _ = _taxed(subtotal, rate)
    for tax in taxes:
        tax["subtotal"] = money(subtotal_tax)
    parent = store.products.get(product["parent_id"]) if product and product["type"] == "variation" else None
    name = str(item.get("name") or (shapes.variation_name(product, parent) if parent and product else
                                    product["name"] if product else ""))  # fmt: skip
    return {
        "id": store.next_item_id(), "name": name,
        "product_id": (parent or product or {}).get("id", 0),
        "variation_id": product["id"] if parent and product else 0,
        "quantity": quantity, "tax_class": tax_class, "subtotal": money(subtotal), "subtotal_tax": money(subtotal_tax),
        "total": money(total), "total_tax": money(total_tax), "taxes": taxes, "meta_data": [],
        "sku": product["sku"] if product else "", "price": float(total) / quantity if quantity else 0.0,
        "image": {"id": "", "src": ""}, "parent_name": parent["name"] if parent else None,
    }  # fmt: skip


def _extra(store: Store, items: list[Any], country: str, kind: str) -> list[Row]:
    rate = _rate(country, "")
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise invalid_param({kind: f"{kind}[{index}] is not of type object."})
        total = _amount(item.get("total"), f"{kind}[{index}][total]") or Decimal(0)
        tax, taxes = _taxed(total, rate)
        row: Row = {"id": store.next_item_id(), "total": money(total), "total_tax": money(tax), "taxes": taxes,
                    "meta_data": []}  # fmt: skip
        if kind == "shipping_lines":
            row |= {"method_title": str(item.get("method_title") or ""), "method_id": str(item.get("method_id") or ""),
                    "instance_id": str(item.get("instance_id") or "")}  # fmt: skip
        else:
            row |= {"name": str(item.get("name") or ""), "tax_class": "", "tax_status": "taxable",
                    "amount": money(total)}  # fmt: skip
        out.append(row)
    return out


def create_order(store: Store, data: Mapping[str, Any]) -> Row:
    """A new order from a `POST /orders` body (see the module docstring); stored, its webhooks fired."""
    fields = validated(data, _FIELDS)
    customer_id = fields.get("customer_id", 0)
    if customer_id and customer_id not in store.customers:
        raise WCError(400, "woocommerce_rest_invalid_customer_id", "Customer ID is invalid.")
    billing = shapes.address(fields.get("billing") or {}, with_email=True)
    shipping = shapes.address(fields.get("shipping") or {}, with_email=False)
    country = (shipping["country"] or billing["country"] or BASE_COUNTRY).upper()
    lines = [_line(store, item, i, country) for i, item in enumerate(fields.get("line_items") or [])]
    shipping_lines = _extra(store, fields.get("shipping_lines") or [], country, "shipping_lines")
    fee_lines = _extra(store, fields.get("fee_lines") or [], country, "fee_lines")
    taxes: dict[int, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for line in lines + fee_lines:
        for tax in line["taxes"]:
            taxes[tax["id"]][0] += Decimal(tax["total"])
    for line in shipping_lines:
        for tax in line["taxes"]:
            taxes[tax["id"]][1] += Decimal(tax["total"])
    tax_lines = []
    for rate_id, (cart_tax, ship_tax) in sorted(taxes.items()):
        _, percent, label = next(r for r in TAX_RATES[country].values() if r[0] == rate_id)
        tax_lines.append({"id": store.next_item_id(), "rate_code": f"{country}-{label.upper()}-1", "rate_id": rate_id,
                          "label": label, "compound": False, "tax_total": money(cart_tax),
                          "shipping_tax_total": money(ship_tax), "rate_percent": percent, "meta_data": []})  # fmt: skip
    cart_tax = sum((Decimal(li["total_tax"]) for li in lines + fee_lines), Decimal(0))
    shipping_total = sum((Decimal(li["total"]) for li in shipping_lines), Decimal(0))
    shipping_tax = sum((Decimal(li["total_tax"]) for li in shipping_lines), Decimal(0))
    net = sum((Decimal(li["total"]) for li in lines + fee_lines), Decimal(0)) + shipping_total
    now = store.clock()
    paid = bool(fields.get("set_paid"))
    status = fields.get("status") or ("processing" if paid else "pending")
    key = secrets.token_hex(7)[:13]
    row: Row = {
        "id": store.next_post_id(), "status": status, "currency": fields.get("currency") or store.settings.currency,
        "prices_include_tax": store.settings.prices_include_tax, "discount_total": "0.00", "discount_tax": "0.00",
        "shipping_total": money(shipping_total), "shipping_tax": money(shipping_tax), "cart_tax": money(cart_tax),
        "total": money(net + cart_tax + shipping_tax), "total_tax": money(cart_tax + shipping_tax),
        "customer_id": customer_id, "order_key": f"wc_order_{key}", "billing": billing, "shipping": shipping,
        "payment_method": fields.get("payment_method", ""),
        "payment_method_title": fields.get("payment_method_title", ""),
        "transaction_id": fields.get("transaction_id", ""), "customer_ip_address": "", "customer_user_agent": "",
        "created_via": "rest-api", "customer_note": fields.get("customer_note", ""),
        "cart_hash": hashlib.md5(key.encode(), usedforsecurity=False).hexdigest(),
        "meta_data": [{"id": store.next_meta_id(), "key": str(m.get("key", "")), "value": m.get("value")}
                      for m in fields.get("meta_data") or [] if isinstance(m, Mapping)],
        "line_items": lines, "tax_lines": tax_lines, "shipping_lines": shipping_lines, "fee_lines": fee_lines,
        "coupon_lines": [], "created": now, "modified": now,
        "date_paid": now if paid or status in ("processing", "completed") else None,
        "date_completed": now if status == "completed" else None,
    }  # fmt: skip
    return store.insert_order(row, reduce_stock=status in ("processing", "completed", "on-hold"))
