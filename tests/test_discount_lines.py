"""Discounts on lines of their own (`gateway.model.separate_discounts`) and what the Exact Online default
mappings make of them: coupons spread over WooCommerce lines move out of the lines into one discount per
VAT rate, order-level discounts get the order's rate; the totals stay the shop's to the cent."""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.woocommerce.normalise import normalise_order
from gateway.model import Customer, Discount, Order, OrderLine, separate_discounts
from tests.mapping_support import integration
from transforms import build_mapping

CENT = Decimal("0.01")
RATES = {1: 21, 2: 9, 3: 6, 4: 0}
DOCUMENTS = {"sales_order": "SalesOrderLines", "sales_invoice": "SalesInvoiceLines",
             "direct_invoice": "SalesInvoiceLines", "sales_entry": "SalesEntryLines"}  # fmt: skip


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


@st.composite
def coupon_orders(draw: st.DrawFn) -> dict[str, Any]:
    """A WooCommerce order (prices excl. VAT) whose coupons WooCommerce split over the lines in cents:
    percent coupons per line, fixed-cart coupons in proportion with the rest on the last line."""
    count = draw(st.integers(1, 6))
    rate_ids = draw(st.lists(st.sampled_from(sorted(RATES)), min_size=count, max_size=count))
    quantities = draw(st.lists(st.integers(1, 9), min_size=count, max_size=count))
    subtotals = [Decimal(c) / 100 for c in draw(st.lists(st.integers(0, 50_000), min_size=count, max_size=count))]
    basis = sum(subtotals, Decimal(0))
    discounts = [Decimal(0)] * count
    coupons = []
    if draw(st.booleans()):
        percent = draw(st.integers(1, 100))
        discounts = [_cents(s * percent / 100) for s in subtotals]
        coupons.append("procent")
    if basis and draw(st.booleans()):
        left = [s - d for s, d in zip(subtotals, discounts, strict=True)]
        rest = sum(left, Decimal(0))
        amount = min(Decimal(draw(st.integers(1, 10_000))) / 100, rest)
        split = [_cents(amount * part / rest) if rest else Decimal(0) for part in left]
        split[-1] = amount - sum(split[:-1], Decimal(0))
        if split[-1] > left[-1] or split[-1] < 0:  # no cents left on the last line: take them from the first
            split = [amount if i == left.index(max(left)) else Decimal(0) for i in range(count)]
        discounts = [d + s for d, s in zip(discounts, split, strict=True)]
        coupons.append("vast")
    items = []
    for index, (rate_id, quantity, subtotal, discount) in enumerate(
        zip(rate_ids, quantities, subtotals, discounts, strict=True)
    ):
        rate = Decimal(RATES[rate_id]) / 100
        total = subtotal - discount
        items.append({
            "id": index + 1, "sku": f"SKU-{index}", "name": f"Item {index}", "quantity": quantity,
            "subtotal": str(subtotal), "subtotal_tax": str(_cents(subtotal * rate)),
            "total": str(total), "total_tax": str(_cents(total * rate)),
            "taxes": [{"id": rate_id, "total": str(total * rate), "subtotal": str(subtotal * rate)}],
        })  # fmt: skip
    total_excl = sum((Decimal(i["total"]) for i in items), Decimal(0))
    total_tax = sum((Decimal(i["total_tax"]) for i in items), Decimal(0))
    return {
        "id": 7, "number": "7", "status": "processing", "currency": "EUR",
        "billing": {"first_name": "Zoë", "email": "zoe@example.com", "country": "NL"},
        "line_items": items,
        "tax_lines": [{"rate_id": r, "rate_percent": RATES[r]} for r in sorted(set(rate_ids))],
        "coupon_lines": [{"code": code, "discount": "0", "discount_tax": "0"} for code in coupons],
        "total": str(total_excl + total_tax), "total_tax": str(total_tax),
    }  # fmt: skip


def _sums(order: Order) -> tuple[Decimal, Decimal, Decimal]:
    """(excl., tax, incl.) of the goods less the discounts that are not in them."""
    off = [d for d in order.discounts if not d.applied_to_lines]
    excl = sum((line.total_excl or Decimal(0) for line in order.lines), Decimal(0))
    tax = sum((line.tax_total or Decimal(0) for line in order.lines), Decimal(0))
    excl -= sum((d.amount_excl or Decimal(0) for d in off), Decimal(0))
    tax -= sum((d.tax_total or Decimal(0) for d in off), Decimal(0))
    incl = sum((line.total_incl or Decimal(0) for line in order.lines), Decimal(0))
    incl -= sum((d.amount_incl or Decimal(0) for d in off), Decimal(0))
    return excl, tax, incl


@settings(max_examples=200, deadline=None)
@given(coupon_orders())
def test_separate_discounts_keep_the_shops_totals_to_the_cent(payload: dict[str, Any]) -> None:
    order = normalise_order(payload)
    booked = separate_discounts(order)
    shop_tax = Decimal(payload["total_tax"])
    assert _sums(booked) == _sums(order) == (Decimal(payload["total"]) - shop_tax, shop_tax, Decimal(payload["total"]))
    for line, item in zip(booked.lines, payload["line_items"], strict=True):  # the goods at their full price
        assert (line.total_excl, line.tax_total) == (Decimal(item["subtotal"]), Decimal(item["subtotal_tax"]))
        assert (line.net_unit_price_excl, line.discount_excl) == (line.unit_price_excl, 0)
    per_rate: dict[Decimal, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for item in payload["line_items"]:
        amounts = per_rate[Decimal(RATES[item["taxes"][0]["id"]])]
        amounts[0] += Decimal(item["subtotal"]) - Decimal(item["total"])
        amounts[1] += Decimal(item["subtotal_tax"]) - Decimal(item["total_tax"])
    wanted = {rate: (excl, tax) for rate, (excl, tax) in per_rate.items() if excl or tax}
    moved = [d for d in booked.discounts if not d.applied_to_lines]  # coupons of 0.00 stay informational
    assert {d.tax_rate: (d.amount_excl, d.tax_total) for d in moved} == wanted
    codes = ", ".join(line["code"] for line in payload["coupon_lines"]) or None
    assert all(d.code == codes for d in moved)


@settings(max_examples=60, deadline=None)
@given(coupon_orders(), st.sampled_from(sorted(DOCUMENTS)))
def test_the_exact_mappings_book_the_goods_at_full_price_and_a_discount_line_per_rate(
    payload: dict[str, Any], document: str
) -> None:
    vat_codes = {"entries": {"21": "2", "9": "1", "6": "6", "0": "0"}}
    tables = {"vat_codes": vat_codes, "revenue_accounts": {"default": "8000"}}
    mapping = build_mapping(integration(settings={"document_type": document}, tables=tables), "orders", "exactonline")
    booked = separate_discounts(normalise_order(payload))
    context = {"account": "A", "items": {f"SKU-{i}": f"I{i}" for i in range(6)} | {"DISCOUNT": "D"},
               "warehouse": "W", "gl_accounts": {"8000": "G"}}  # fmt: skip
    lines = mapping.apply(booked, context)[DOCUMENTS[document]]
    discounts = lines[len(payload["line_items"]):]
    assert [(d["VATCode"], d.get("Item", d.get("GLAccount"))) for d in discounts] == [
        ({"21": "2", "9": "1", "6": "6", "0": "0"}[str(d.tax_rate)], "G" if document == "sales_entry" else "D")
        for d in booked.discounts if not d.applied_to_lines
    ]
    amount = "AmountFC" if document == "sales_entry" else "UnitPrice"
    total = sum((Decimal(str(line[amount])) * Decimal(str(line.get("Quantity", 1))) for line in lines), Decimal(0))
    assert total == Decimal(payload["total"]) - Decimal(payload["total_tax"]) or document != "sales_entry"
    if document == "sales_entry":  # Koppel sends the VAT amounts: the shop's to the cent
        assert sum((Decimal(str(line["VATAmountFC"])) for line in lines), Decimal(0)) == Decimal(payload["total_tax"])


def test_in_lines_leaves_the_lines_and_only_order_level_discounts_get_a_rate() -> None:
    line = OrderLine(
        sku="A", quantity=2, unit_price_excl="10", net_unit_price_excl="9", discount_excl="2", discount_tax="0.42",
        total_excl="18", tax_total="3.78", total_incl="21.78", tax_rate="21",
    )  # fmt: skip
    coupon = Discount(code="x", amount_excl="2", tax_total="0.42")
    promo = Discount(code="LENTE", description="Lente", amount_incl="12.10", applied_to_lines=False)
    customer = Customer(source="s")
    order = Order(source="s", id="1", number="1", customer=customer, lines=[line], discounts=[coupon, promo])
    kept = separate_discounts(order, from_lines=False)
    assert kept.lines == order.lines and kept.discounts[0] == coupon
    # an order-level discount given incl. VAT: the order's only rate, and its amount excl. VAT from it
    assert (kept.discounts[1].tax_rate, kept.discounts[1].amount_excl, kept.discounts[1].tax_total) == (
        Decimal(21), Decimal("10.00"), Decimal("2.10"))
    moved = separate_discounts(order)
    assert [(d.code, d.tax_rate, d.amount_excl, d.applied_to_lines) for d in moved.discounts] == [
        ("x", Decimal(21), Decimal(2), False), ("LENTE", Decimal(21), Decimal("10.00"), False)]


def test_an_order_level_discount_of_an_order_with_several_rates_gets_none() -> None:
    lines = [OrderLine(sku="A", quantity=1, total_excl="10", tax_rate="21"),
             OrderLine(sku="B", quantity=1, total_excl="10", tax_rate="9")]  # fmt: skip
    promo = Discount(code="P", amount_excl="5", applied_to_lines=False)
    order = Order(source="s", id="1", number="1", customer=Customer(source="s"), lines=lines, discounts=[promo])
    assert separate_discounts(order).discounts == [promo]
