from datetime import date
from decimal import Decimal

from connectors.exactonline.normalise import (
    normalise_account,
    normalise_item,
    normalise_sales_order,
    normalise_stock_position,
)
from tests.mapping_support import fixture


def test_sales_order_with_account_and_main_contact():
    order = normalise_sales_order(
        fixture("exactonline/sales_order.json"),
        account=fixture("exactonline/account.json"),
        contacts=fixture("exactonline/contacts.json"),
    )
    assert order.number == "20013" and order.order_date == date(2026, 3, 14) and order.status == "open"
    assert order.custom_fields["your_ref"] == "PO-778"
    mug, coaster = order.lines
    assert mug.tax_rate == Decimal("21") and mug.discount_excl == Decimal("95.0")
    assert mug.net_unit_price_excl == Decimal("8.55") and mug.total_excl == Decimal("855")
    assert coaster.tax_rate == Decimal("9")
    customer = order.customer
    assert customer.kind == "company" and customer.number == "1001"  # Code's padding stripped
    assert customer.contact.first_name == "Jürgen" and customer.contact.last_name == "van Beek"
    assert customer.billing_address.country == "DE"


def test_sales_order_without_account_names_the_buyer():
    order = normalise_sales_order(fixture("exactonline/sales_order.json"))
    assert order.customer.company_name == "Großhandel Müller GmbH"


def test_person_account_item_and_stock():
    person = normalise_account(fixture("exactonline/account_person.json"))
    assert person.kind == "person" and person.contact.first_name == "René"
    item = normalise_item(fixture("exactonline/item.json"))
    assert item.sku == "KOP-TASSE-BL" and item.price_excl == Decimal("10.19") and item.categories == ["Tassen"]
    stock = normalise_stock_position(fixture("exactonline/stock_position.json"))
    assert (stock.on_hand, stock.reserved, stock.available) == (Decimal(240), Decimal(30), Decimal(210))


def test_exact_dates_are_read_one_way_whether_raw_or_parsed_by_the_client_and_queued():
    """A webhook's record is raw JSON (`/Date(ms)/`); a polled one was parsed by the client (Amsterdam
    wall clock) and travelled through the queue as ISO text. Both give the same order: 14 March stays
    14 March (not the 13th in UTC), and Created is 09:22:11 Amsterdam time."""
    import json
    from datetime import UTC, datetime

    from connectors.exactonline.odata import iso_dates, unwrap

    raw = fixture("exactonline/sales_order.json")
    queued = json.loads(json.dumps(iso_dates(unwrap(raw))))
    from_webhook, from_poll = normalise_sales_order(raw), normalise_sales_order(queued)
    assert from_webhook.order_date == from_poll.order_date == date(2026, 3, 14)
    assert from_webhook.created_at == from_poll.created_at == datetime(2026, 3, 14, 8, 22, 11, tzinfo=UTC)


def test_a_vat_percentage_that_is_not_a_fraction_is_a_normalise_error_naming_the_line():
    """Found by the corruption property: 1e14 used to escape as pydantic's ValidationError."""
    import pytest

    from gateway.model import NormaliseError

    payload = fixture("exactonline/sales_order.json")
    payload["d"]["SalesOrderLines"]["results"][0]["VATPercentage"] = 1e14
    with pytest.raises(NormaliseError, match=r"SalesOrderLines\[0\]\.VATPercentage: expected a fraction"):
        normalise_sales_order(payload)


def test_a_zero_rated_line_has_its_total_including_vat():
    """A line on a 0 % VAT code (an export, an item without a sales VAT code) carries VATAmountFC 0."""
    payload = fixture("exactonline/sales_order.json")
    line = payload["d"]["SalesOrderLines"]["results"][1]
    line |= {"VATPercentage": 0, "VATAmountFC": 0}
    coaster = normalise_sales_order(payload).lines[1]
    assert coaster.tax_total == 0 and coaster.total_incl == coaster.total_excl is not None
