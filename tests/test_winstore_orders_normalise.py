"""Winstore orders and customers (the assumed read shapes [U]) in the canonical model: a till's prices VAT
included, each position's SKU its article number, company or person by the company name, status codes named,
and the XML shape (one position, nested elements) read as the JSON one."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.winstore.client import WinstoreClient
from connectors.winstore.normalise import normalise_customer, normalise_order, status_name
from connectors.winstore.wire import parse_xml, records
from gateway.errors import PermanentError

ORDER: dict[str, Any] = {
    "ordernr": "K000042", "orderdate": "2026-11-28 14:03:51", "customerid": 5001, "email": "inkoop@noord.example",
    "branch": 1, "channel": "till", "total": "45.80", "currency": "EUR", "statuscode": "2",
    "changedate": "2026-11-28T14:05:00",
    "invoice_add": {"company": "Koffiebranderij Noord B.V.", "fname": "Jan", "lname": "Smit", "street": "Markt",
                    "streetnr": "3", "zip": "9711 AA", "city": "Groningen", "countryISO": "nl", "phone": "050-1"},
    "positions": [
        {"product_id": "1001", "artnr": "KOP-TASSE-BL", "amount": 2, "single_price": "12.10", "vat": "21",
         "reduction": "2.42"},
        {"product_id": "1002", "artnr": "KOP-KOF-1KG", "amount": 1, "single_price": "21.80", "vat": "9"},
    ],
}  # fmt: skip


def test_an_order_reads_with_prices_incl_vat_and_amounts_excl_vat_at_each_articles_rate():
    order = normalise_order(ORDER)
    assert (order.source, order.id, order.number, order.status) == ("winstore", "K000042", "K000042", "completed")
    assert order.custom_fields == {"winstore_branch": "1", "winstore_channel": "till", "status_code": "2"}
    assert order.prices_include_tax and order.currency == "EUR" and order.total_incl == Decimal("45.80")
    assert order.created_at == datetime(2026, 11, 28, 13, 3, 51, tzinfo=UTC) and order.order_date == date(2026, 11, 28)
    cup, coffee = order.lines
    assert (cup.sku, cup.product_id, cup.quantity, cup.unit_price_incl) == ("KOP-TASSE-BL", "1001", 2, Decimal("12.10"))
    assert (cup.total_incl, cup.total_excl, cup.tax_total) == (Decimal("21.78"), Decimal("18.00"), Decimal("3.78"))
    assert (cup.net_unit_price_incl, cup.net_unit_price_excl, cup.unit_price_excl) == (
        Decimal("10.89"), Decimal("9"), Decimal("10"))
    assert (cup.discount_excl, cup.discount_tax) == (Decimal("2.00"), Decimal("0.42"))
    assert (coffee.total_excl, coffee.tax_total, coffee.tax_rate) == (Decimal("20.00"), Decimal("1.80"), Decimal(9))
    assert order.tax_total == Decimal("5.58") and order.total_excl == Decimal("40.22")


def test_an_order_with_a_company_in_its_address_is_a_company_customer_with_its_contact():
    customer = normalise_order(ORDER).customer
    assert (customer.kind, customer.company_name, customer.id, customer.email) == (
        "company", "Koffiebranderij Noord B.V.", "5001", "inkoop@noord.example")
    assert (customer.contact.first_name, customer.contact.last_name) == ("Jan", "Smit")
    address = customer.billing_address
    assert address is not None and (address.street, address.postcode, address.country) == ("Markt 3", "9711 AA", "NL")


def test_an_anonymous_till_sale_is_a_person_without_address_or_e_mail():
    position = {"product_id": "1", "artnr": "A", "amount": 1, "single_price": "1"}
    order = normalise_order({"ordernr": "K1", "customerid": 999999, "statuscode": "2", "positions": [position]})
    assert order.customer.kind == "person" and order.customer.email is None and order.billing_address is None
    assert order.lines[0].tax_rate is None and order.lines[0].total_excl is None  # no rate: no amounts excl. VAT


def test_the_xml_read_with_one_position_is_the_same_order():
    xml = (b'<ArrayOfOrder xmlns="http://schemas.datacontract.org/2004/07/Winstore.Osd"><Order>'
           b"<ordernr>K7</ordernr><statuscode>1</statuscode><email>a@b.example</email>"
           b"<invoice_add><fname>Anna</fname><lname>Smit</lname></invoice_add>"
           b"<positions><position><product_id>1001</product_id><artnr>A-1</artnr><amount>3</amount>"
           b"<single_price>2.50</single_price></position></positions></Order></ArrayOfOrder>")  # fmt: skip
    [record] = records(parse_xml(xml))
    order = normalise_order(record)
    assert (order.number, order.status, order.customer.kind, order.customer.contact.first_name) == (
        "K7", "processing", "person", "Anna")
    [line] = order.lines
    assert (line.sku, line.quantity, line.total_incl) == ("A-1", 3, Decimal("7.50"))


def test_status_codes_are_named_by_the_systems_table_and_unknown_ones_travel_as_codes():
    assert status_name("9") == "cancelled" and status_name("77") == "77" and status_name(None) is None
    assert normalise_order(ORDER, status_names={"2": "processing"}).status == "processing"


@pytest.mark.parametrize(("change", "message"), [
    ({"ordernr": None}, "winstore order ?: the order has no ordernr"),
    ({"positions": []}, "winstore order K000042: the order has no positions"),
    ({"positions": [{"artnr": "A", "single_price": "1"}]}, "winstore order K000042: position 1: no amount"),
    ({"positions": [{"artnr": "A", "amount": "x", "single_price": "1"}]}, "position 1: the amount 'x' is not a number"),
    ({"positions": [{"artnr": "A", "amount": "0", "single_price": "1"}]}, "position 1: the amount is 0"),
])  # fmt: skip
def test_an_unreadable_order_is_refused_naming_what(change, message):
    with pytest.raises(PermanentError, match=message.replace("?", r"\?")):
        normalise_order(ORDER | change)


def test_a_customer_is_a_company_or_a_person():
    company = normalise_customer({"customerid": 5001, "company": "Bakkerij Jörg B.V.", "fname": "Jörg",
                                  "lname": "Bakker", "email": "inkoop@joerg.example", "street": "Oudegracht",
                                  "streetnr": "112a", "zip": "3511 AX", "city": "Utrecht", "countryISO": "NL",
                                  "changedate": "2026-11-28T14:05:00"})  # fmt: skip
    assert (company.kind, company.company_name, company.id, company.contact.first_name) == (
        "company", "Bakkerij Jörg B.V.", "5001", "Jörg")
    assert company.billing_address is not None and company.billing_address.street == "Oudegracht 112a"
    assert company.modified_at == datetime(2026, 11, 28, 13, 5, tzinfo=UTC)
    person = normalise_customer({"CustomerId": "5002", "FirstName": "Els", "LastName": "Peeters"})
    assert (person.kind, person.company_name, person.display_name) == ("person", None, "Els Peeters")
    with pytest.raises(PermanentError, match="the customer has no customerid"):
        normalise_customer({"fname": "X"})


def test_the_endpoints_are_assumed_and_a_setting_overrides_a_name():
    import httpx

    with httpx.Client() as http:
        api = WinstoreClient(http, base_url="https://w.example/iposws/api/osd", username="u", password="p",
                             endpoints={"orders": "GetOrders"})  # fmt: skip
    assert api.endpoints["orders"] == "GetOrders" and api.endpoints["customers"] == "GetCustomerDataChangesByDate"


# -- any input: read, or refused with a permanent error ------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=12),
                    st.decimals(allow_nan=True, allow_infinity=True, places=3).map(str))  # fmt: skip
POSITION_FIELDS = st.sampled_from(["product_id", "artnr", "ArtNr", "amount", "Quantity", "single_price", "vat",
                                   "reduction", "description"])  # fmt: skip
ORDER_FIELDS = st.sampled_from(["ordernr", "OrderNr", "orderdate", "customerid", "email", "branch", "channel",
                                "total", "currency", "statuscode", "changedate"])  # fmt: skip
POSITIONS = st.lists(st.dictionaries(POSITION_FIELDS, SCALARS, max_size=8), max_size=3)
ADDRESS = st.dictionaries(st.sampled_from(["company", "fname", "lname", "street", "streetnr", "zip", "city",
                                           "countryISO", "phone"]), SCALARS, max_size=6)  # fmt: skip


@settings(deadline=None, max_examples=300)
@given(st.dictionaries(ORDER_FIELDS, SCALARS, max_size=10), st.one_of(POSITIONS, SCALARS,
       POSITIONS.map(lambda p: {"position": p[0] if len(p) == 1 else p})), st.one_of(ADDRESS, SCALARS))  # fmt: skip
def test_any_order_record_normalises_or_is_refused_with_a_permanent_error(header, positions, address):
    record = header | {"positions": positions, "invoice_add": address}
    try:
        order = normalise_order(record)
    except PermanentError:
        return
    assert order.source == "winstore" and order.number and order.lines
    for line in order.lines:  # what is derived agrees with what was read
        assert line.total_incl is not None and line.net_unit_price_incl is not None
        if line.total_excl is not None:
            assert line.tax_total == line.total_incl - line.total_excl
    assert order.customer.kind == ("company" if order.customer.company_name else "person")


MONEY = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999.99"), places=2)
RATES = st.one_of(st.none(), st.sampled_from([Decimal(0), Decimal(6), Decimal(9), Decimal(21)]))


@settings(deadline=None, max_examples=200)
@given(st.lists(st.tuples(st.integers(-5, 50).filter(bool), MONEY, RATES, st.booleans()), min_size=1, max_size=5),
       st.sampled_from([None, "0", "1", "2", "9", "42"]), st.booleans())  # fmt: skip
def test_a_well_formed_order_keeps_every_amount_the_till_gave(lines, code, as_text):
    positions = []
    for index, (amount, price, rate, reduced) in enumerate(lines):
        position: dict[str, Any] = {"product_id": str(1000 + index), "artnr": f"A-{index}", "single_price": str(price),
                                    "amount": str(amount) if as_text else amount}  # fmt: skip
        if rate is not None:
            position["vat"] = str(rate)
        if reduced:
            position["reduction"] = "0.50"
        positions.append(position)
    order = normalise_order({"ordernr": "K1", "statuscode": code, "positions": positions})
    assert [line.sku for line in order.lines] == [f"A-{i}" for i in range(len(lines))]
    assert order.status == (status_name(code) if code else None)
    for line, (amount, price, rate, reduced) in zip(order.lines, lines, strict=True):
        assert line.quantity == amount and line.unit_price_incl == price and line.tax_rate == rate
        assert line.total_incl == price * amount - (Decimal("0.50") if reduced else 0)
        if rate is None:
            assert line.total_excl is None and line.tax_total is None
        else:  # split at the article's rate, to the cent, nothing lost
            assert line.total_excl is not None and line.tax_total is not None
            assert line.total_excl + line.tax_total == line.total_incl
            assert abs(line.total_excl * (1 + rate / 100) - line.total_incl) <= Decimal("0.01") * (1 + rate / 100)
            assert line.discount_excl + line.discount_tax == (Decimal("0.50") if reduced else 0)
    if all(rate is not None for _, _, rate, _ in lines):
        assert order.tax_total == sum(line.tax_total for line in order.lines if line.tax_total is not None)
