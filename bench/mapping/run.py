"""Orders mapped per second per core: Koppel's declarative default Exact Online order mapping
(compiled once, applied many times) beside a hand-written Python function that builds the same
payload from the same canonical order, measured in one run on one core.

    .venv/bin/python -m bench.mapping            # or: .venv/bin/python bench/mapping/run.py
    .venv/bin/python -m bench.mapping --orders 3000 --lines 4 --rounds 5

Both sides start from the canonical `Order` and end with the same dict (checked before timing):
the mapper's cost includes building its input from the model. Prints orders/s for each, the ratio
and whether it is within the target (declarative within 3x of hand-written).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.config import Integration
from gateway.model import Address, Customer, Order, OrderLine, Person, ShippingLine
from transforms import build_mapping

TARGET_RATIO = 3.0
TABLES = {
    "vat_codes": {"entries": {"NL:21": "2", "21": "2", "9": "1", "0": "0"}},
    "payment_conditions": {"default": "30", "entries": {"ideal": "IDL"}},
}
SETTINGS = {"timezone": "Europe/Amsterdam", "shipping_item": "VERZEND"}


def make_orders(count: int, lines: int) -> list[Order]:
    """Varied, realistic orders: company and person buyers, non-ASCII names, several lines."""
    orders = []
    for n in range(count):
        company = "Bakkerij Ünal B.V." if n % 2 else None
        address = Address(
            company=company,
            first_name="Zoë",
            last_name="de Vries-Öztürk",
            street=f"Keizersgracht {n % 300 + 1}-A",
            postcode="1015 CJ",
            city="Amsterdam",
            country="NL",
            email=f"klant{n}@example.nl",
        )
        order_lines = [
            OrderLine(
                id=str(i),
                sku=f"SKU-{(n + i) % 50:03d}",
                name=f"Artikel {i} “Koppel”",
                quantity=Decimal(1 + (n + i) % 4),
                unit_price_excl=Decimal("10.1933"),
                net_unit_price_excl=Decimal("9.5000"),
                total_excl=Decimal("19.00"),
                tax_total=Decimal("3.99"),
                total_incl=Decimal("22.99"),
                tax_rate=Decimal(21 if i % 3 else 9),
            )
            for i in range(lines)
        ]
        orders.append(
            Order(
                source="woocommerce",
                id=str(10_000 + n),
                number=str(10_000 + n),
                status="processing",
                created_at=datetime(2026, 3, 14, 23, 30, tzinfo=UTC),
                currency="EUR",
                customer=Customer(
                    source="woocommerce",
                    kind="company" if company else "person",
                    company_name=company,
                    contact=Person(first_name="Zoë", last_name="de Vries-Öztürk", email=address.email),
                    email=address.email,
                ),
                billing_address=address,
                shipping_address=address,
                lines=order_lines,
                shipping_lines=[
                    ShippingLine(
                        method_id="flat_rate",
                        method_title="PostNL",
                        total_excl=Decimal("4.95"),
                        tax_total=Decimal("1.04"),
                        total_incl=Decimal("5.99"),
                        tax_rate=Decimal(21),
                    )
                ],
                payment_method="ideal",
            )
        )
    return orders


def make_context(orders: list[Order]) -> dict[str, Any]:
    skus = {line.sku for o in orders for line in o.lines if line.sku} | {"VERZEND"}
    return {"account": "8c6b5f2e-0000-4000-8000-000000000001", "items": {s: f"guid-{s}" for s in skus}}


# --- the hand-written function: what a developer would write for this one mapping ---------------


def hand_written(tables: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any]) -> Callable[..., dict]:
    vat = {k.casefold(): v for k, v in tables["vat_codes"]["entries"].items()}
    payment = {k.casefold(): v for k, v in tables["payment_conditions"]["entries"].items()}
    payment_default = tables["payment_conditions"].get("default")
    zone = ZoneInfo(settings.get("timezone", "Europe/Amsterdam"))
    shipping_item = settings.get("shipping_item", "SHIPPING")

    def rate_text(rate: Decimal | None) -> str | None:
        return None if rate is None else format(rate, "f")

    def vat_code(country: str | None, rate: Decimal | None) -> str | None:
        text = rate_text(rate)
        for key in (f"{country or ''}:{text or ''}", text, country):
            if key and key.casefold() in vat:
                return vat[key.casefold()]
        return None

    def map_order(order: Order, context: Mapping[str, Any]) -> dict[str, Any]:
        country = order.shipping_address.country if order.shipping_address else None
        if order.order_date is not None:
            day = order.order_date.isoformat()
        else:
            day = order.created_at.astimezone(zone).strftime("%Y-%m-%d") if order.created_at else None
        payload: dict[str, Any] = {"OrderedBy": context["account"], "YourRef": order.number[:30]}
        if day:
            payload["OrderDate"] = day
        if order.currency:
            payload["Currency"] = order.currency
        payload["Description"] = ("Webshop order " + order.number)[:60]
        if order.payment_method:
            condition = payment.get(order.payment_method.casefold(), payment_default)
            if condition is not None:
                payload["PaymentCondition"] = condition
        lines = []
        for line in order.lines:
            row: dict[str, Any] = {"Item": context["items"][line.sku]}
            if line.name:
                row["Description"] = line.name[:60]
            row["Quantity"] = line.quantity
            row["UnitPrice"] = line.net_unit_price_excl
            code = vat_code(country, line.tax_rate)
            if code is not None:
                row["VATCode"] = code
            lines.append(row)
        for ship in order.shipping_lines:
            row = {"Item": context["items"][shipping_item], "Description": (ship.method_title or "Shipping")[:60]}
            row["Quantity"] = Decimal(1)
            row["UnitPrice"] = ship.total_excl
            code = vat_code(country, ship.tax_rate)
            if code is not None:
                row["VATCode"] = code
            lines.append(row)
        payload["SalesOrderLines"] = lines
        return payload

    return map_order


def _rate(func: Callable[[], None], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return count / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mapping", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders per round (default 2000)")
    parser.add_argument("--lines", type=int, default=3, help="product lines per order (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is reported (default 5)")
    args = parser.parse_args(argv)

    integration = Integration(
        id="bench", source="shop", target="exact", flows=["orders"], settings=SETTINGS, tables=TABLES
    )
    mapping = build_mapping(integration, "orders", "exactonline")  # compiled once
    manual = hand_written(TABLES, SETTINGS)
    orders = make_orders(args.orders, args.lines)
    context = make_context(orders)

    for order in orders[:50]:  # same payload, or the comparison means nothing
        declarative, handmade = mapping.apply(order, context), manual(order, context)
        if declarative != handmade:
            print("payloads differ:\n", declarative, "\n", handmade, file=sys.stderr)
            return 1

    def run_declarative() -> None:
        for order in orders:
            mapping.apply(order, context)

    def run_manual() -> None:
        for order in orders:
            manual(order, context)

    run_declarative()  # warm caches (zone info, country tables) before timing either side
    run_manual()
    declarative_rate = _rate(run_declarative, len(orders), args.rounds)
    manual_rate = _rate(run_manual, len(orders), args.rounds)
    ratio = manual_rate / declarative_rate
    fast, total = mapping.fast_ratio
    print(f"default Exact Online order mapping ({args.lines} product lines + shipping, {args.orders} orders/round)")
    print(f"  declarative mapper : {declarative_rate:10,.0f} orders/s per core", end="")
    print(f" ({fast}/{total} expressions on the fast path)")
    print(f"  hand-written Python: {manual_rate:10,.0f} orders/s per core")
    verdict = "OK" if ratio <= TARGET_RATIO else "MISSED"
    print(f"  ratio              : {ratio:10.2f}x  (target: within {TARGET_RATIO:.0f}x) -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
