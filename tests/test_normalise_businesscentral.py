from datetime import date
from decimal import Decimal

from connectors.businesscentral.normalise import (
    normalise_customer,
    normalise_item,
    normalise_item_stock,
    normalise_sales_order,
)
from tests.mapping_support import fixture


def test_sales_order_with_item_and_comment_lines():
    order = normalise_sales_order(fixture("businesscentral/sales_order.json"))
    assert order.number == "101005" and order.order_date == date(2026, 3, 14) and order.status == "open"
    assert order.currency == "GBP" and order.total_incl == Decimal("1493.04")
    desk, chair = order.lines
    assert desk.sku == "1896-S" and desk.unit_price_excl == Decimal("506.6") and desk.tax_rate == Decimal("20")
    assert chair.discount_excl == Decimal("9.3") and chair.net_unit_price_excl == Decimal("77")
    assert desk.variant_id is None  # the empty GUID
    assert order.notes == ["Deliver to the side entrance"]
    assert order.shipping_address.street == "Straße des 17. Juni 135" and order.shipping_address.country == "DE"
    assert order.customer.kind == "company" and order.customer.contact.last_name == "Townes"


def test_sales_order_with_the_customer_entity_and_separate_lines():
    payload = fixture("businesscentral/sales_order.json")
    lines = payload.pop("salesOrderLines")
    order = normalise_sales_order(payload, lines, customer=fixture("businesscentral/customer_person.json"))
    assert len(order.lines) == 2 and order.customer.kind == "person"
    assert order.customer.contact.first_name == "René"


def test_a_persons_name_in_the_addresses_is_a_name_and_the_external_number_the_reference():
    payload = fixture("businesscentral/sales_order.json") | {"externalDocumentNumber": "5001"}
    payload |= {"customerName": "René François", "billToName": "René François", "shipToName": "Anna de Vries"}
    order = normalise_sales_order(payload, customer=fixture("businesscentral/customer_person.json"))
    assert order.reference == "5001"
    billing = order.billing_address
    assert (billing.company, billing.first_name, billing.last_name) == (None, "René", "François")
    assert order.shipping_address.company == "Anna de Vries"  # another name: left as BC holds it
    company = normalise_sales_order(fixture("businesscentral/sales_order.json"))
    assert company.billing_address.company == "Adatum Corporation" and company.reference is None


def test_customers_and_items():
    company = normalise_customer(fixture("businesscentral/customer_company.json"))
    assert company.kind == "company" and company.vat_number == "GB789456278" and company.currency is None
    item = normalise_item(fixture("businesscentral/item.json"))
    assert item.sku == "1896-S" and item.price_excl == Decimal("506.6") and item.ean == "5012345678900"
    assert item.type == "simple" and item.categories == ["TABLE"]
    stock = normalise_item_stock(fixture("businesscentral/item.json"))
    # API v2.0 reports no reservations: available = on hand minus reserved (0) = the inventory
    assert (stock.on_hand, stock.reserved, stock.available) == (Decimal("7.5"), Decimal(0), Decimal("7.5"))
