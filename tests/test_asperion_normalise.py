"""Asperion's records in the canonical model: fixtures, company vs person, prices and VAT, and property tests of
the parsers (dates, amounts, flags, list answers): total on anything a sender can send, exact on what they read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.asperion.client import rows_of
from connectors.asperion.errors import AsperionResponseError
from connectors.asperion.normalise import (
    amount,
    flag,
    normalise_article,
    normalise_document,
    normalise_relation,
    parse_date,
)
from gateway.errors import PermanentError

FIXTURES = Path(__file__).parent / "fixtures" / "asperion"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def test_an_article_is_a_simple_product_priced_excl_vat_with_its_stock_and_group():
    product = normalise_article(fixture("item_article"))
    assert (product.sku, product.type, product.price_excl, product.price_incl) == ("AS-CHAIR-01", "simple",
                                                                                   Decimal("149.95"), None)  # fmt: skip
    assert product.tax_rate == 21 and product.stock_quantity == 12 and product.manage_stock is True
    assert product.categories == ["Meubels"] and product.category_slugs == ["meub"]
    # .NET's seven fractional digits, local time without offset
    assert product.modified_at == datetime(2026, 12, 2, 15, 45, 3, 217000, tzinfo=UTC)


def test_an_inactive_service_article_is_an_unpublished_virtual_product_priced_incl_vat():
    product = normalise_article(fixture("item_service_inactive"))
    assert (product.type, product.published, product.manage_stock) == ("virtual", False, False)
    assert product.price_incl == Decimal("65.00") and product.price_excl is None


def test_an_articles_properties_are_its_attributes_and_a_wrong_shape_is_refused_naming_the_article():
    product = normalise_article({"code": "EX-BORD", "description": "Bord", "properties": [
        {"name": "Kleur", "value": "Wit"}, {"name": "Maten", "value": ["27", 30]}, {"name": "Leeg", "value": ""},
        {"name": "Vegan", "value": True}, {"name": "Genest", "value": {"a": 1}},
        {"value": "zonder naam"}]})  # fmt: skip
    assert [(a.name, a.values, a.variation) for a in product.attributes] == [
        ("Kleur", ["Wit"], False), ("Maten", ["27", "30"], False), ("Vegan", ["true"], False)]
    assert normalise_article({"code": "X", "description": "x"}).attributes == []
    with pytest.raises(PermanentError, match="asperion article X: properties must be a list"):
        normalise_article({"code": "X", "description": "x", "properties": {"Kleur": "Wit"}})
    with pytest.raises(PermanentError, match="asperion article X: a property must be"):
        normalise_article({"code": "X", "description": "x", "properties": ["Wit"]})


def test_an_article_without_a_code_is_refused_naming_it():
    with pytest.raises(PermanentError, match="asperion article 7: the article has no code"):
        normalise_article({"id": 7, "description": "x"})


def test_a_company_relation_keeps_its_contact_and_addresses():
    customer = normalise_relation(fixture("customer_company"))
    assert (customer.kind, customer.company_name, customer.number) == ("company", "Bakkerij De Korenaar B.V.", "10042")
    assert (customer.contact.first_name, customer.contact.last_name) == ("Els", "de Vries")
    assert customer.billing_address.street == "Molenstraat 12 a" and customer.billing_address.country == "NL"
    assert customer.shipping_address.street == "Industrieweg 7"
    assert customer.vat_number == "NL001234567B01" and customer.chamber_of_commerce == "12345678"


@pytest.mark.parametrize(("record", "kind"), [
    ({"relationType": "Person", "firstName": "Jan", "lastName": "Jansen"}, "person"),
    ({"relationType": "Bedrijf", "companyName": "X BV"}, "company"),
    ({"relationType": "Particulier", "companyName": "Only A Name"}, "person"),
    ({"companyName": "Untyped BV"}, "company"),
    ({"companyName": "Untyped BV", "firstName": "Ann", "lastName": "Smit"}, "person"),
    ({"isCompany": True, "name": "Flagged"}, "company"),
])  # fmt: skip
def test_company_or_person(record, kind):
    assert normalise_relation({"id": 1, **record}).kind == kind


def test_a_sales_order_has_its_lines_totals_and_the_embedded_relation_as_customer():
    order = normalise_document(fixture("sales_order"))
    assert (order.number, order.reference, order.status) == ("VO00017", "WEB-5521", "open")
    assert order.customer.email == "inkoop@korenaar.nl" and order.customer.kind == "company"
    assert [(line.sku, line.quantity, line.total_excl, line.tax_total) for line in order.lines] == [
        ("AS-CHAIR-01", 2, Decimal("299.90"), Decimal("62.98")), ("AS-ASSEMBLY", 1, Decimal("60.00"), Decimal("12.60"))]
    assert (order.total_excl, order.tax_total, order.total_incl) == (Decimal("359.9"), Decimal("75.58"),
                                                                     Decimal("435.48"))  # fmt: skip
    assert order.shipping_address.street == "Industrieweg 7"


def test_a_discounted_line_incl_vat_splits_its_total():
    order = normalise_document({"id": 1, "orderNumber": "VO1", "pricesIncludeVat": True, "lines": [
        {"articleCode": "A", "quantity": 2, "unitPrice": "12.10", "discountPercentage": 10, "vatPercentage": 21}]})
    line = order.lines[0]
    assert (line.net_unit_price_incl, line.total_incl, line.tax_total, line.total_excl) == (
        Decimal("10.89"), Decimal("21.78"), Decimal("3.78"), Decimal("18.00"))
    assert order.total_incl == Decimal("21.78") and order.prices_include_tax is True


def test_a_document_line_without_a_quantity_is_refused_naming_the_line():
    with pytest.raises(PermanentError, match="asperion sales order VO2 line 1: no quantity"):
        normalise_document({"id": 2, "orderNumber": "VO2", "lines": [{"articleCode": "A"}]})


# -- parsers: properties ------------------------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]))


@given(moments)
def test_an_iso_date_with_an_offset_reads_back_to_the_same_moment(moment):
    assert parse_date(moment.isoformat()) == moment
    assert parse_date(moment.astimezone(UTC).isoformat().replace("+00:00", "Z")) == moment


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)))
def test_a_date_without_an_offset_is_wall_clock_time_in_the_zone(naive):
    parsed = parse_date(naive.isoformat())
    assert parsed is not None and parsed.tzinfo is not None
    assert parsed.replace(tzinfo=None) == naive and parsed.utcoffset() == naive.replace(tzinfo=AMSTERDAM).utcoffset()


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)), st.integers(0, 9))
def test_seven_fractional_digits_are_cut_not_refused(naive, extra):
    text = naive.replace(microsecond=naive.microsecond).strftime("%Y-%m-%dT%H:%M:%S.%f") + str(extra)
    assert parse_date(text) == naive.replace(tzinfo=AMSTERDAM)


@given(st.one_of(st.text(max_size=60), st.integers(), st.floats(), st.none(), st.booleans(),
                 st.lists(st.integers(), max_size=3)))  # fmt: skip
def test_parse_date_never_raises(raw):
    found = parse_date(raw)
    assert found is None or found.tzinfo is not None


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**9, max_value=10**9))
def test_amounts_read_exactly_as_text_with_a_point_or_a_comma(number):
    assert amount(str(number), "x", "l") == number
    assert amount(str(number).replace(".", ","), "x", "l") == number


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
def test_a_json_number_is_read_through_its_shortest_repr(number):
    assert amount(number, "x", "l") == Decimal(repr(number))


@given(st.one_of(st.text(max_size=30), st.booleans(), st.floats(), st.dictionaries(st.text(max_size=3), st.none())))
def test_amount_is_a_number_none_or_a_permanent_error_naming_the_field(raw):
    try:
        found = amount(raw, "the sales price", "asperion article X")
    except PermanentError as exc:
        assert str(exc).startswith("asperion article X: the sales price")
    else:
        assert found is None or found.is_finite()


@given(st.one_of(st.text(max_size=10), st.booleans(), st.integers(), st.none()))
def test_flag_is_a_boolean_or_none(raw):
    assert flag(raw) in (True, False, None)
    if isinstance(raw, bool):
        assert flag(raw) is raw


records = st.lists(st.dictionaries(st.sampled_from(["id", "code"]), st.integers(), max_size=2), max_size=4)


@given(records, st.sampled_from(["data", "items", "value", "results", None]), st.one_of(st.none(), st.integers(0, 9)))
def test_list_answers_give_their_records_in_any_envelope(rows, key, total):
    body = rows if key is None else {key: rows, **({"totalCount": total} if total is not None else {})}
    assert rows_of(body, "GET x") == (rows, total if key is not None else None)


@given(st.one_of(st.text(max_size=5), st.integers(), st.none(), st.dictionaries(st.text(max_size=4), st.integers())))
def test_anything_else_is_a_bad_response(body):
    with pytest.raises(AsperionResponseError):
        rows_of(body, "GET x")


# -- keyset reading of changes: every record is read, however dates and pages fall -------------------------------


def serve_changes(rows: list[dict], edits: dict[int, int], state: dict[str, bool]):
    """A fake Asperion list of `rows` ({id, minute}): `modifiedSince` inclusive, sorted by date then id, paged;
    `edits` moves record id → a later minute the first time page 2 of any read is asked (an edit mid-read)."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if int(params["page"]) == 2 and not state["edited"]:
            state["edited"] = True
            for row in rows:
                if row["id"] in edits:
                    row["minute"] = edits[row["id"]]
        since = datetime.fromisoformat(params["modifiedSince"].replace("Z", "+00:00"))
        picked = sorted((r for r in rows if BASE + timedelta(minutes=r["minute"]) >= since),
                        key=lambda r: (r["minute"], r["id"]))  # fmt: skip
        size, page = int(params["pageSize"]), int(params["page"])
        chunk = picked[(page - 1) * size : page * size]
        data = [{"id": r["id"], "modifiedDate": (BASE + timedelta(minutes=r["minute"])).isoformat()} for r in chunk]
        return httpx.Response(200, json={"data": data, "totalCount": len(picked)})

    return handler


BASE = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@given(st.lists(st.integers(0, 20), min_size=0, max_size=40), st.integers(1, 7),
       st.dictionaries(st.integers(0, 39), st.integers(21, 30), max_size=3))  # fmt: skip
def test_a_keyset_read_finds_every_record_even_one_edited_during_the_read(minutes, size, edits):
    import httpx

    from connectors.asperion.client import AsperionClient

    rows = [{"id": n, "minute": m} for n, m in enumerate(minutes)]
    state = {"edited": False}
    with httpx.Client(transport=httpx.MockTransport(serve_changes(rows, edits, state))) as http:
        api = AsperionClient(http, base_url="https://api.example", tenant_id="1", page_size=size)
        read = [r for page in api.changed("articles", BASE, lambda r: datetime.fromisoformat(r["modifiedDate"]))
                for r in page]  # fmt: skip
    assert {r["id"] for r in read} == {r["id"] for r in rows}
    edited = [r["id"] for r in rows if r["id"] in edits] if state["edited"] else []
    last_seen = {r["id"]: r["modifiedDate"] for r in read}
    for ident in edited:  # an edit made during the read (it moved the record to the end) is read too
        assert last_seen[ident] == (BASE + timedelta(minutes=edits[ident])).isoformat()
