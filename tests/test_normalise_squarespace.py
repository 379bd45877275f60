from datetime import UTC, datetime
from decimal import Decimal

import pytest

from connectors.squarespace.normalise import normalise_order
from gateway.model import NormaliseError
from tests.mapping_support import fixture


def test_tax_inclusive_order_keeps_only_what_squarespace_says():
    order = normalise_order(fixture("squarespace/order.json"))
    assert (order.id, order.number, order.status) == ("585d498fdee9f31a60284a37", "1042", "pending")
    assert order.custom_fields["status_code"] == "PENDING"
    cancelled = normalise_order(fixture("squarespace/order.json") | {"fulfillmentStatus": "CANCELED"})
    assert (cancelled.status, cancelled.custom_fields["status_code"]) == ("cancelled", "CANCELED")
    assert order.created_at == datetime(2026, 3, 14, 21, 3, 11, 372000, tzinfo=UTC)
    assert order.prices_include_tax and order.currency == "EUR"
    assert order.customer.kind == "person" and order.customer.email == "marie.dupont@example.be"
    assert order.billing_address.last_name == "Dupont-Lévêque"
    candle, card = order.lines
    assert candle.unit_price_incl == Decimal("14.50") and candle.total_incl == Decimal("29.00")
    # Squarespace gives tax only in total: 7.39 of 42.60 is 21 %, split per amount to the cent
    assert (candle.tax_rate, candle.total_excl, candle.tax_total) == (Decimal(21), Decimal("23.97"), Decimal("5.03"))
    assert candle.net_unit_price_excl == Decimal("11.985")
    assert candle.options == {"Taille": "Large"}
    assert candle.custom_fields == {"Message": "Joyeux anniversaire !", "line_item_type": "PHYSICAL"}
    assert card.options == {}  # null arrays are fine
    [shipping] = order.shipping_lines
    assert (shipping.total_incl, shipping.total_excl, shipping.tax_rate) == (Decimal("7.50"), Decimal("6.20"), 21)
    [discount] = order.discounts
    assert discount.code == "WELCOME10" and not discount.applied_to_lines
    assert (discount.tax_rate, discount.amount_excl, discount.tax_total) == (21, Decimal("3.22"), Decimal("0.68"))
    assert order.total_incl == Decimal("42.60") and order.tax_total == Decimal("7.39")
    assert order.notes == ["Cadeauverpakking"]


def test_exclusive_prices_and_bad_money():
    payload = fixture("squarespace/order.json")
    payload["priceTaxInterpretation"] = "EXCLUSIVE"  # tax on top: 42.60 excl. + 8.95 at 21 %
    payload["taxTotal"]["value"], payload["grandTotal"]["value"] = "8.95", "51.55"
    order = normalise_order(payload)
    assert order.lines[0].unit_price_excl == Decimal("14.50") and order.lines[0].total_incl == Decimal("35.09")
    assert order.total_excl == _sum(order, "total_excl") == Decimal("42.60")
    payload["lineItems"][0]["unitPricePaid"] = {"value": "14,50"}
    with pytest.raises(NormaliseError, match=r"lineItems\[0\].unitPricePaid.value"):
        normalise_order(payload)


def _sum(order, name):
    lines = sum((getattr(x, name) for x in [*order.lines, *order.shipping_lines]), Decimal(0))
    return lines - sum((getattr(d, name.replace("total_", "amount_") if name != "tax_total" else name)
                        for d in order.discounts), Decimal(0))


def test_rates_from_the_table_by_sku_split_a_discount_per_rate_and_keep_squarespaces_tax_to_the_cent():
    payload = fixture("squarespace/order.json")
    # the card at 6 %, the rest at 21 %: 29.00 → 5.03, 10.00 → 0.57, 7.50 → 1.30, less 2.90 → 0.50 and 1.00 → 0.06
    payload["taxTotal"]["value"] = "6.34"
    order = normalise_order(payload, tax_rates={"SQ-CARD": Decimal(6), "BE": Decimal(21)})
    assert [line.tax_rate for line in order.lines] == [Decimal(21), Decimal(6)]
    assert [(d.tax_rate, d.amount_incl) for d in order.discounts] == [(Decimal(21), Decimal("2.90")),
                                                                    (Decimal(6), Decimal("1.00"))]
    assert _sum(order, "total_incl") == Decimal("42.60")
    assert _sum(order, "tax_total") == Decimal("6.34") and _sum(order, "total_excl") == order.total_excl


def test_rates_that_cannot_give_squarespaces_tax_name_the_setting():
    with pytest.raises(NormaliseError, match=r"taxTotal.*set the system's tax_rates"):
        normalise_order(fixture("squarespace/order.json"), tax_rates={"default": Decimal(6)})


def test_an_order_without_tax_books_at_zero_and_mixed_rates_without_a_table_keep_the_amounts():
    payload = fixture("squarespace/order.json")
    payload["taxTotal"]["value"] = "0.00"
    order = normalise_order(payload)
    assert {line.tax_rate for line in order.lines} == {Decimal(0)} and order.lines[0].total_excl == Decimal("29.00")
    payload["taxTotal"]["value"] = "6.26"  # no single rate gives it
    order = normalise_order(payload)
    assert order.lines[0].tax_rate is None and order.lines[0].total_excl is None
    assert order.lines[0].total_incl == Decimal("29.00")


def test_the_payment_the_connector_read_is_the_payment_method():
    payload = fixture("squarespace/order.json") | {"koppel_payment": {"provider": "PAYPAL", "card": None}}
    order = normalise_order(payload)
    assert (order.payment_method, order.payment_method_title) == ("paypal", "Paypal")
    assert normalise_order(fixture("squarespace/order.json")).payment_method is None  # not read: no method
