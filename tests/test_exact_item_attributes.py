"""An Exact item's classes and free fields as product attributes (connectors/exactonline/normalise.py), the
system setting that names them, and where the default mappings send them: Asperion's article `properties`
[U] in their own update group; WooCommerce only when the table `attributes` names them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.exactonline.connector import ExactSettings
from connectors.exactonline.normalise import FREE_FIELDS, ITEM_CLASSES, normalise_item
from gateway.model import Attribute, NormaliseError
from tests.mapping_support import integration
from transforms import build_mapping

ITEM = {"ID": "i-1", "Code": "EX-BORD", "Description": "Bord wit", "IsStockItem": True}


def attributes(names: dict[str, str] | None = None, **fields: Any) -> list[tuple[str, list[str]]]:
    product = normalise_item({"d": ITEM | fields}, attribute_names=names)
    assert all(not a.variation for a in product.attributes)
    return [(a.name, a.values) for a in product.attributes]


def test_item_classes_travel_as_class_n_unless_named_and_an_empty_name_leaves_one_out() -> None:
    fields = {"Class_01": "RD", "Class_02": "A", "Class_10": "X"}
    assert attributes(**fields) == [("Class 1", ["RD"]), ("Class 2", ["A"]), ("Class 10", ["X"])]
    assert attributes({"Class_01": "Kleur", "Class_02": ""}, **fields) == [("Kleur", ["RD"]), ("Class 10", ["X"])]
    assert attributes(Class_03=None, Class_04="  ") == []  # unset classes: nothing


def test_free_fields_travel_only_when_named_each_read_as_text() -> None:
    fields = {"FreeTextField_01": "Katoen", "FreeNumberField_02": 1.50, "FreeBoolField_01": False,
              "FreeDateField_01": "/Date(1710374400000)/", "FreeTextField_02": "intern"}  # fmt: skip
    assert attributes(**fields) == []
    names = {"FreeTextField_01": "Materiaal", "FreeNumberField_02": "Gewicht", "FreeBoolField_01": "Biologisch",
             "FreeDateField_01": "Sinds", "FreeBoolField_02": "Vegan"}  # fmt: skip
    assert attributes(names, **fields) == [
        ("Materiaal", ["Katoen"]),
        ("Gewicht", ["1.5"]),
        ("Biologisch", ["false"]),
        ("Sinds", ["2024-03-14"]),
    ]  # FreeBoolField_02 is null: left out


def test_fields_given_one_name_make_one_attribute_with_their_values() -> None:
    names = {"Class_01": "Kleur", "FreeTextField_03": "Kleur"}
    assert attributes(names, Class_01="WIT", FreeTextField_03="Gebroken wit") == [("Kleur", ["WIT", "Gebroken wit"])]


def test_a_free_field_of_the_wrong_type_is_a_normalise_error_naming_it() -> None:
    with pytest.raises(NormaliseError, match="FreeNumberField_01"):
        normalise_item({"d": ITEM | {"FreeNumberField_01": "veel"}}, attribute_names={"FreeNumberField_01": "N"})


def test_the_setting_refuses_an_unknown_field_naming_the_known_ones() -> None:
    assert ExactSettings(item_attributes={"Class_01": "Kleur", "FreeDateField_05": "Sinds"}).item_attributes
    with pytest.raises(ValueError, match=r"'Class_11'.*Class_01…Class_10"):
        ExactSettings(item_attributes={"Class_11": "x"})


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
values = st.one_of(st.none(), texts, st.integers(-(10**6), 10**6), st.decimals(-(10**6), 10**6, places=4).map(str))


@given(st.dictionaries(st.sampled_from((*ITEM_CLASSES, *FREE_FIELDS)), values),
       st.dictionaries(st.sampled_from((*ITEM_CLASSES, *FREE_FIELDS)), texts))  # fmt: skip
def test_any_item_fields_give_attributes_or_a_normalise_error(fields: dict[str, Any], names: dict[str, str]) -> None:
    try:
        found = normalise_item({"d": ITEM | fields}, attribute_names=names).attributes
    except NormaliseError as exc:
        assert exc.field in fields  # names the field it could not read
        return
    assert len({a.name for a in found}) == len(found)  # one attribute per name
    for attribute in found:
        assert attribute.name.strip() and attribute.values and all(attribute.values)
    named = [f for f in FREE_FIELDS if names.get(f, "").strip() and fields.get(f) is not None]
    assert sum(len(a.values) for a in found) <= len([c for c in ITEM_CLASSES if fields.get(c) is not None]) + len(named)


def product(**fields: Any) -> Any:
    return normalise_item({"d": ITEM | {"StandardSalesPrice": 6.5, "SalesVatCode": "2"} | fields},
                          attribute_names={"FreeTextField_01": "Materiaal"})  # fmt: skip


def test_asperion_articles_carry_the_attributes_as_properties_renamed_by_the_tables() -> None:
    item = product(Class_01="RD", FreeTextField_01="Porselein")
    tables = {"attributes": {"entries": {"Class 1": "Kleur"}}, "attribute_values": {"entries": {"RD": "Rood"}},
              "tax_rates": {"default": "21", "entries": {}}}  # fmt: skip
    payload = build_mapping(integration(tables=tables), "products", "asperion").apply(item)
    assert payload["properties"] == [{"name": "Kleur", "value": "Rood"}, {"name": "Materiaal", "value": "Porselein"}]
    plain = build_mapping(integration(tables={"tax_rates": tables["tax_rates"]}), "products", "asperion")
    assert plain.apply(item)["properties"][0] == {"name": "Class 1", "value": "RD"}  # no tables: as Exact has it


def test_woocommerce_gets_an_exact_attribute_only_when_the_table_names_it() -> None:
    item = product(Class_01="RD", Class_02="A", FreeTextField_01="Porselein")
    assert build_mapping(integration(), "products", "woocommerce").apply(item)["attributes"] == []
    tables = {"attributes": {"entries": {"Class 1": "Kleur"}}}
    payload = build_mapping(integration(tables=tables), "products", "woocommerce").apply(item)
    assert payload["attributes"] == [{"name": "Kleur", "options": ["RD"], "variation": False, "visible": True}]
    asperion = item.model_copy(update={"source": "asperion"})  # an article's properties: an ERP's too
    assert build_mapping(integration(), "products", "woocommerce").apply(asperion)["attributes"] == []


def test_a_shops_own_attributes_still_reach_woocommerce_unmapped() -> None:
    shop = product().model_copy(
        update={"source": "woocommerce", "attributes": [Attribute(name="Land van herkomst", values=["België"])]}
    )
    payload = build_mapping(integration(), "products", "woocommerce").apply(shop)
    assert payload["attributes"] == [{"name": "Land van herkomst", "options": ["België"], "variation": False,
                                      "visible": True}]  # fmt: skip
    assert Decimal(payload["regular_price"]) == Decimal("6.5")
