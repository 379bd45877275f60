from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from connectors.woocommerce.normalise import normalise_customer, normalise_order, normalise_product, normalise_stock
from gateway.model import NormaliseError
from tests.mapping_support import fixture


def test_company_order_with_coupon_fee_and_shipping():
    order = normalise_order(fixture("woocommerce/order_company_coupon.json"))
    assert (order.source, order.id, order.number, order.status) == ("woocommerce", "5120", "5120", "processing")
    assert order.created_at == datetime(2026, 3, 14, 23, 12, 40, tzinfo=UTC)  # *_gmt wins
    assert order.order_date == date(2026, 3, 15)  # the shop's local date
    assert order.customer.kind == "company"
    assert order.customer.company_name == "Bakkerij Ünal B.V."
    assert order.customer.contact.last_name == "de Vries-Öztürk"
    assert order.customer.vat_number == "NL 8547.03.145.B01"
    assert order.shipping_address.street == "Keizersgracht 123-A"
    flour, tin, glove = order.lines
    assert flour.unit_price_excl == Decimal("12.5") and flour.net_unit_price_excl == Decimal("11.25")
    assert flour.discount_excl == Decimal("3.75") and flour.tax_rate == Decimal("9")
    assert tin.unit_price_excl == Decimal("12.5") and tin.net_unit_price_excl == Decimal("11.875")
    assert tin.options == {"Kleur": "rood", "Maat": "40 cm"}  # hidden _reduced_stock left out
    assert tin.variant_id == "311" and tin.tax_rate == Decimal("21")
    assert glove.total_excl == 0 and glove.tax_rate is None  # a free line says nothing about its rate
    assert order.shipping_lines[0].total_incl == Decimal("8.41")
    assert order.fees[0].name == "Toeslag koelverpakking" and order.fees[0].tax_rate == Decimal("21")
    assert order.discounts[0].code == "lente10" and order.discounts[0].applied_to_lines
    assert order.total_incl == Decimal("78.78") and order.total_excl == Decimal("68.45")
    assert order.notes == ["Graag vóór 9 uur leveren."]
    assert order.custom_fields == {"inkoopordernummer": "PO-2026-044"}
    assert order.payment_method == "ideal" and order.shipping_method == "flat_rate"


def test_person_order_never_uses_the_float_line_price():
    order = normalise_order(fixture("woocommerce/order_person_de.json"))
    assert order.customer.kind == "person"
    assert order.customer.contact.first_name == "Jörg"
    cup, coaster = order.lines
    assert cup.unit_price_excl == Decimal("10.1933")  # 30.58 / 3, not the float 10.193333…
    assert coaster.net_unit_price_excl == Decimal("12.36")
    assert all(isinstance(v, Decimal) for v in (cup.total_excl, cup.tax_total, cup.total_incl))
    assert cup.tax_rate == Decimal("21")  # a Dutch shop charging its own VAT to a German consumer


def test_variable_product_with_variations():
    product = normalise_product(
        fixture("woocommerce/product_variable.json"), fixture("woocommerce/product_variations.json")
    )
    assert product.type == "variable" and product.sku == "BAK-PROFI"
    assert [a.name for a in product.attributes if a.variation] == ["Kleur", "Maat"]
    assert product.features == {"Land van herkomst": "België"}
    assert product.categories == ["Bakvormen", "Keuken & Koken"]
    red, black = product.variants
    assert red.options == {"Kleur": "rood", "Maat": "40 cm"} and red.price_excl == Decimal("11.88")
    assert red.ean == "8712345678906" and red.stock_quantity == Decimal(14) and red.manage_stock is True
    assert black.manage_stock is None  # "parent": follows the product
    assert black.published is False
    assert product.custom_fields == {"materiaal": "aluminium"}


def test_product_prices_follow_the_shop_tax_setting():
    payload = {"id": 1, "sku": "A", "type": "simple", "regular_price": "12.10", "virtual": True}
    assert normalise_product(payload).price_excl == Decimal("12.10")
    incl = normalise_product(payload, prices_include_tax=True)
    assert incl.price_incl == Decimal("12.10") and incl.price_excl is None and incl.type == "virtual"


def test_customer_and_stock():
    customer = normalise_customer(fixture("woocommerce/customer_company.json"))
    assert customer.kind == "company" and customer.billing_address.country == "BE"
    assert customer.shipping_address is None  # all blank in WooCommerce
    stock = normalise_stock({"id": 311, "sku": "BAK-PROFI-R40", "manage_stock": True, "stock_quantity": 14})
    assert stock.available == Decimal(14) and stock.managed


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "(record): expected a JSON object"),
        ({"number": "1"}, "id: is missing"),
        ({"id": 1, "line_items": [{"quantity": "two"}]}, "line_items[0].quantity: expected a decimal number"),
        ({"id": 1, "billing": {"email": ["x"]}}, "billing.email: expected text, got a list"),
        ({"id": 1, "date_created_gmt": "yesterday"}, "date_created_gmt: expected an ISO 8601 timestamp"),
    ],
)
def test_bad_payloads_raise_normalise_error_naming_the_field(payload, message):
    with pytest.raises(NormaliseError) as info:
        normalise_order(payload)
    assert message in str(info.value)
    assert str(info.value).startswith("woocommerce order")


@pytest.mark.parametrize(
    "key", ["_billing_vat", "billing_vat", "_billing_vat_number", "billing_vat_number", "vat_number"]
)
def test_the_vat_number_is_read_from_every_meta_key_woocommerce_stores_it_under(key):
    customer = fixture("woocommerce/customer_company.json")
    customer["meta_data"] = [{"id": 3, "key": key, "value": "BE0123.456.789"}]
    assert normalise_customer(customer).vat_number == "BE0123.456.789"
    order = fixture("woocommerce/order_company_coupon.json")
    order["meta_data"] = [{"id": 1, "key": key, "value": "NL 8547.03.145.B01"}]
    assert normalise_order(order).customer.vat_number == "NL 8547.03.145.B01"
