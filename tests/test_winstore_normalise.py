"""Winstore articles and stock in the canonical model: simple products only, local dates, exact amounts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.winstore.normalise import change_time, normalise_product, normalise_stock
from gateway.errors import PermanentError

FIXTURES = Path(__file__).parent / "fixtures" / "winstore"


def test_an_article_is_a_simple_product_with_its_price_incl_vat_and_local_change_time():
    product = normalise_product(json.loads((FIXTURES / "item_article.json").read_text(encoding="utf-8")))
    assert (product.source, product.id, product.sku, product.name) == (
        "winstore", "104233", "WS-JEANS-3232", "Slim fit jeans stone wash 32/32")  # fmt: skip
    assert product.price_incl == Decimal("89.95") and product.price_excl is None and product.tax_rate == Decimal(21)
    assert product.ean == "8712345678906" and product.published
    assert product.modified_at == datetime(2026, 11, 28, 13, 3, 51, tzinfo=UTC)  # 14:03:51 in Amsterdam (CET)
    assert product.custom_fields == {"winstore_supplier": "17", "winstore_supplier_number": "SF-3232-SW",
                                     "winstore_brand": "Denimco", "winstore_colour": "stone wash"}  # fmt: skip


def test_descriptive_fields_are_features_under_fixed_names_and_the_unit_is_the_products():
    record = {"ArtKey": 7, "ArtNr": "KOF-1", "Description": "Koffie", "SupplierId": 17, "Brand": " Baristo ",
              "Artikelgroep": "KOFFIE", "Eenheid": "zak", "Colour": ""}  # fmt: skip
    product = normalise_product(record)
    assert product.features == {"supplier": "17", "brand": "Baristo", "group": "KOFFIE"}  # an empty field is none
    assert product.unit == "zak"
    assert product.custom_fields == {"winstore_supplier": "17", "winstore_brand": "Baristo", "winstore_group": "KOFFIE"}
    assert normalise_product({"ArtKey": 8, "ArtNr": "KOF-2"}).unit is None


def test_a_vat_percentage_reads_without_trailing_zeros_as_tables_key_it():
    rates = [normalise_product({"ArtKey": 9, "ArtNr": "X", "VatPercentage": given}).tax_rate
             for given in ("21.00", "9,0", "5.50", 10, "0.00")]  # fmt: skip
    assert [str(rate) for rate in rates] == ["21", "9", "5.5", "10", "0"]


def test_a_record_claiming_variants_categories_or_images_is_still_one_simple_product():
    record = {"ArtKey": 5, "ArtNr": "X-1", "Description": "Shoe", "Type": "variable",
              "Variants": [{"ArtNr": "X-1-42"}], "Categories": ["Shoes"], "Images": ["https://img/x.jpg"]}  # fmt: skip
    product = normalise_product(record)
    assert product.type == "simple" and product.variants == [] and product.categories == [] and product.images == []


def test_xml_text_values_read_as_json_numbers_do():
    product = normalise_product(json.loads((FIXTURES / "item_article_xml_shape.json").read_text(encoding="utf-8")))
    assert product.sku == "0412-77" and product.price_incl == Decimal("25.00") and product.ean is None
    assert not product.published  # Active false
    assert product.modified_at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 02:30 is in the DST gap: read as CET


def test_an_article_without_a_number_goes_by_its_gtin_and_without_either_is_refused():
    assert normalise_product({"ArtKey": 1, "Gtin": "8712345678906"}).sku == "8712345678906"
    with pytest.raises(PermanentError, match="neither an article number nor a GTIN"):
        normalise_product({"ArtKey": 1, "Description": "?"})
    with pytest.raises(PermanentError, match=r"winstore article A: the sales price 'twelve' is not a number"):
        normalise_product({"ArtNr": "A", "SalesPrice": "twelve"})


def test_stock_is_on_hand_less_reserved_per_warehouse():
    level = normalise_stock(json.loads((FIXTURES / "stock_warehouse.json").read_text(encoding="utf-8")))
    assert (level.sku, level.on_hand, level.reserved, level.available, level.location) == (
        "WS-JEANS-3232", Decimal(3), Decimal(1), Decimal(2), "2")  # fmt: skip
    with pytest.raises(PermanentError, match="holds no stock quantity"):
        normalise_stock({"ArtNr": "A"})


FIELDS = st.sampled_from(["ArtKey", "ArtNr", "Gtin", "Description", "SalesPrice", "VatPercentage", "ChangeDate",
                          "Active", "Stock", "Reserved", "Warehouse", "SupplierId"])  # fmt: skip
VALUES = st.one_of(st.none(), st.text(max_size=25), st.integers(), st.booleans(),
                   st.decimals(allow_nan=True, allow_infinity=True), st.lists(st.integers(), max_size=2))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELDS, VALUES, max_size=10))
def test_any_record_normalises_or_is_refused_with_a_permanent_error(record):
    for normalise in (normalise_product, normalise_stock):
        try:
            found = normalise(record)
        except PermanentError:
            continue
        assert found.source == "winstore" and found.sku
        assert not any(isinstance(v, list) and found.sku == str(v) for v in record.values())  # a list is no SKU


@settings(deadline=None)
@given(st.text(max_size=40))
def test_any_change_date_reads_or_is_none(text):
    moment = change_time({"ChangeDate": text})
    assert moment is None or moment.tzinfo is not None
