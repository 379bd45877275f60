from datetime import UTC, datetime
from decimal import Decimal

import pytest

from connectors.squarespace.normalise import normalise_order
from gateway.model import NormaliseError
from tests.mapping_support import fixture


def test_tax_inclusive_order_keeps_only_what_squarespace_says():
    order = normalise_order(fixture("squarespace/order.json"))
    assert (order.id, order.number, order.status) == ("585d498fdee9f31a60284a37", "1042", "pending")
    assert order.created_at == datetime(2026, 3, 14, 21, 3, 11, 372000, tzinfo=UTC)
    assert order.prices_include_tax and order.currency == "EUR"
    assert order.customer.kind == "person" and order.customer.email == "marie.dupont@example.be"
    assert order.billing_address.last_name == "Dupont-Lévêque"
    candle, card = order.lines
    assert candle.unit_price_incl == Decimal("14.50") and candle.total_incl == Decimal("29.00")
    assert candle.unit_price_excl is None and candle.tax_rate is None  # no per-line tax from Squarespace
    assert candle.options == {"Taille": "Large"}
    assert candle.custom_fields == {"Message": "Joyeux anniversaire !", "line_item_type": "PHYSICAL"}
    assert card.options == {}  # null arrays are fine
    assert order.shipping_lines[0].total_incl == Decimal("7.50") and order.shipping_lines[0].total_excl is None
    assert order.discounts[0].code == "WELCOME10" and not order.discounts[0].applied_to_lines
    assert order.total_incl == Decimal("42.60") and order.tax_total == Decimal("7.51")
    assert order.notes == ["Cadeauverpakking"]


def test_exclusive_prices_and_bad_money():
    payload = fixture("squarespace/order.json")
    payload["priceTaxInterpretation"] = "EXCLUSIVE"
    order = normalise_order(payload)
    assert order.lines[0].unit_price_excl == Decimal("14.50") and order.lines[0].total_incl is None
    payload["lineItems"][0]["unitPricePaid"] = {"value": "14,50"}
    with pytest.raises(NormaliseError, match=r"lineItems\[0\].unitPricePaid.value"):
        normalise_order(payload)
