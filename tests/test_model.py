from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from gateway.model import (
    Address,
    Customer,
    NormaliseError,
    Order,
    OrderLine,
    Person,
    Reader,
    per_unit,
    plain,
    rate_of,
    record_label,
    to_decimal,
)


def test_money_refuses_floats_and_keeps_decimals_exact():
    line = OrderLine(quantity="3", total_excl="30.58")
    assert line.total_excl == Decimal("30.58")
    with pytest.raises(ValidationError, match="must not be floats"):
        OrderLine(quantity=3, total_excl=30.58)
    with pytest.raises(ValueError, match="decimal number"):
        to_decimal("12,50")
    with pytest.raises(ValueError, match="finite"):
        to_decimal("NaN")
    with pytest.raises(ValueError, match="out of range"):
        to_decimal("1e40")


def test_unit_prices_are_derived_from_totals_half_up_to_four_places():
    assert per_unit(Decimal("30.58"), Decimal(3)) == Decimal("10.1933")
    assert per_unit(Decimal("12.36"), Decimal(1)) == Decimal("12.36")
    assert per_unit(Decimal("1.00005"), Decimal(1)) == Decimal("1.0001")
    assert per_unit(Decimal("5"), Decimal(0)) is None
    assert rate_of(Decimal("6.43"), Decimal("30.58")) == Decimal("21.03")
    assert str(plain(Decimal("20.00"))) == "20"
    assert str(plain(Decimal("1E+2"))) == "100"


def test_timestamps_must_carry_a_zone_and_are_kept_in_utc():
    cet = timezone(timedelta(hours=1))
    customer = Customer(source="x", created_at=datetime(2026, 3, 15, 0, 30, tzinfo=cet))
    assert customer.created_at == datetime(2026, 3, 14, 23, 30, tzinfo=UTC)
    with pytest.raises(ValidationError, match="time zone"):
        Customer(source="x", created_at=datetime(2026, 3, 15))


def test_records_are_frozen_and_refuse_unknown_fields():
    order = Order(source="woocommerce", id="1", number="1", customer=Customer(source="woocommerce"))
    with pytest.raises(ValidationError):
        order.number = "2"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        Order(source="w", id="1", number="1", customer=Customer(source="w"), colour="red")


def test_display_names_follow_the_company_or_person_rule():
    company = Customer(source="x", kind="company", company_name="ACME B.V.", contact=Person(first_name="Jan"))
    person = Customer(source="x", contact=Person(first_name="Zoë", last_name="Öztürk"))
    assert company.display_name == "ACME B.V."
    assert person.display_name == "Zoë Öztürk"
    assert Address(first_name="A", last_name="B").name == "A B"


def test_record_label_names_source_kind_and_id():
    order = Order(source="woocommerce", id="9", number="4711", customer=Customer(source="woocommerce"))
    assert record_label(order) == "woocommerce order 4711"


def test_reader_errors_name_record_and_field_path():
    doc = Reader({"lines": [{"qty": "x"}]}, "woocommerce", "order", "4711")
    line = doc.objects("lines")[0]
    with pytest.raises(NormaliseError) as info:
        line.number("qty")
    assert str(info.value) == "woocommerce order 4711: lines[0].qty: expected a decimal number"
    with pytest.raises(NormaliseError, match="expected a list"):
        Reader({"lines": "no"}, "w", "order").objects("lines")
    assert Reader({"image": []}, "w", "order").obj("image") is None  # PHP's empty object
    with pytest.raises(NormaliseError):  # a connector's own encoding: Exact's normaliser reads it (one way)
        Reader({"t": "/Date(1773446400000)/"}, "e", "order").timestamp("t")
    assert Reader({"d": "2026-03-14T00:00:00+01:00"}, "e", "order").date("d") == date(2026, 3, 14)
    assert Reader({"n": 12.356666666666667}, "e", "order").number("n") == Decimal("12.356666666666667")
