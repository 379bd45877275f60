"""Products: the WooCommerce normaliser's product parts, the product transform functions, the update field
groups of the Exact item mapping and their setting's validation (`koppel config check`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.woocommerce.normalise import normalise_product
from gateway.config import parse_config
from gateway.model import Product, Variant
from transforms import default_mapping, validate_integration
from transforms.errors import FunctionError
from transforms.functions import fn_plain_text, fn_price_excl, fn_price_incl, fn_variant_title
from workers.flows.products import items_of

VARIATION = {
    "id": 501, "type": "variation", "parent_id": 500, "name": "Hoodie - Blue, L", "sku": "HOOD-BLUE-L",
    "status": "publish", "regular_price": "48.40", "virtual": False, "categories": [],
    "attributes": [{"id": 1, "name": "Colour", "option": "Blue"}, {"id": 2, "name": "Size", "option": "L"}],
    "images": [], "meta_data": [{"key": "_gtin", "value": "4006381333931"}],
}  # fmt: skip
PARENT = {
    "id": 500, "type": "variable", "name": "Hoodie", "status": "publish", "description": "<p>Warm</p>",
    "short_description": "Soft", "categories": [{"id": 3, "name": "Hoodies & Sweaters", "slug": "hoodies-sweaters"}],
    "attributes": [
        {"name": "Colour", "options": ["Blue"], "variation": True},
        {"name": "Material", "options": ["Cotton"], "variation": False},
    ],
    "images": [{"src": "https://shop.example/wp-content/uploads/hoodie.jpg"}], "variations": [501],
}  # fmt: skip


def test_a_variation_on_its_own_takes_its_parents_name_categories_features_and_image():
    product = normalise_product(VARIATION | {"parent": PARENT})
    assert (product.type, product.sku, product.name, product.parent_id) == ("variation", "HOOD-BLUE-L", "Hoodie", "500")
    assert product.categories == ["Hoodies & Sweaters"] and product.category_slugs == ["hoodies-sweaters"]
    assert product.features == {"Material": "Cotton"}
    assert product.images == ["https://shop.example/wp-content/uploads/hoodie.jpg"]
    assert product.ean == "4006381333931" and product.price_excl == Decimal("48.40")
    [variant] = product.variants
    assert variant.options == {"Colour": "Blue", "Size": "L"}
    [item] = items_of(product)
    assert (item.sku, item.type, item.variants[0].options["Size"]) == ("HOOD-BLUE-L", "variation", "L")


def test_without_its_parent_a_variations_name_is_its_title_without_the_options():
    product = normalise_product(VARIATION)
    assert product.name == "Hoodie" and product.features == {}


def test_a_variation_of_a_draft_parent_is_not_published():
    assert normalise_product(VARIATION | {"parent": PARENT | {"status": "draft"}}).published is False


def test_a_category_without_a_slug_gets_one_from_its_name():
    product = normalise_product({"id": 1, "name": "X", "sku": "X", "categories": [{"id": 4, "name": "Thé & Café"}]})
    assert product.category_slugs == ["the-cafe"]


def test_a_virtual_variation_is_a_virtual_item_and_the_parent_is_never_one():
    payload = PARENT | {"sku": "HOOD", "variations": [VARIATION | {"virtual": True}, VARIATION | {"sku": ""}]}
    product = normalise_product(payload)
    [item] = items_of(product)
    assert (item.sku, item.type, item.published) == ("HOOD-BLUE-L", "virtual", True)
    assert items_of(product.model_copy(update={"variants": []})) == []


def test_a_variants_own_price_and_ean_win_the_parents_otherwise():
    product = Product(source="x", id="1", name="T", type="variable", price_excl=Decimal("10"), ean="1",
                      variants=[Variant(sku="A"), Variant(sku="B", price_excl=Decimal("12"), ean="2")])  # fmt: skip
    a, b = items_of(product)
    assert (a.price_excl, a.ean, b.price_excl, b.ean) == (Decimal("10"), None, Decimal("12"), "2")


# -- functions -------------------------------------------------------------------------------------------------


@given(st.text(max_size=80), st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=12), max_size=4),
       st.integers(min_value=1, max_value=80))  # fmt: skip
def test_a_variant_title_never_exceeds_its_length_and_keeps_fitting_options_whole(name, options, length):
    title = fn_variant_title(name, options, length)
    suffix = ", ".join(v for v in options.values() if v)
    assert title is None or len(title) <= length
    if title is not None and suffix and name and len(suffix) + 5 <= length:
        assert title.endswith(f" \u2013 {suffix}")


def test_a_long_name_is_shortened_to_keep_the_options():
    title = fn_variant_title("A very long product name for a hoodie that goes on and on", {"c": "Blue", "s": "XL"}, 40)
    assert title == "A very long product name for\u2026 \u2013 Blue, XL" and len(title) == 40


def test_plain_text_of_html():
    html = "<p>Warm &amp;&nbsp;<b>soft</b></p><ul><li>one</li><li>two</li></ul>"
    assert fn_plain_text(html) == "Warm & soft\none\ntwo"
    assert fn_plain_text("<p> </p>") is None


def test_prices_convert_between_incl_and_excl_tax_with_a_known_rate():
    assert fn_price_excl(None, "12.10", "21") == "10"
    assert fn_price_incl("10", None, "21") == "12.1"
    assert fn_price_excl("10", None, None) == "10"
    with pytest.raises(FunctionError, match="tax_rates"):
        fn_price_excl(None, "12.10", None)


# -- update groups -----------------------------------------------------------------------------------------------


def test_the_exact_item_mapping_declares_its_update_groups_with_safe_defaults():
    mapping = default_mapping("products", "exactonline")
    assert mapping is not None
    fields = ["Code", "Description", "Notes", "ExtraDescription", "Picture", "StandardSalesPrice", "Unit", "Extra"]
    assert mapping.update_fields({}, fields) == {"Code", "Description", "StandardSalesPrice", "Extra"}
    switched = mapping.update_fields({"image": True, "prices": False, "other": False}, fields)
    assert switched == {"Description", "Picture"}


def config(settings: dict[str, Any]) -> Any:
    return parse_config({
        "endpoints": [{"id": "hooks", "kind": "woocommerce", "secret": "env:S"}],
        "systems": [{"id": "exact", "kind": "exactonline", "credentials": {"client_secret": "env:S"},
                     "settings": {"client_id": "a"}}],
        "integrations": [{"id": "i", "source": "hooks", "target": "exact", "flows": ["products"],
                          "settings": settings}],
    }, environ={"S": "x"})  # fmt: skip


def test_an_unknown_update_group_is_a_config_error_naming_the_known_ones():
    problems = validate_integration(config({"product_update": {"pictures": False}}).integrations[0], 0,
                                    target_kind="exactonline")  # fmt: skip
    [problem] = problems
    assert problem.startswith("integrations[0].settings.product_update.pictures: unknown field group; the groups are ")
    assert "image" in problem and "long_description" in problem and "other" in problem


def test_update_switches_must_be_booleans_and_the_publication_setting_too():
    settings = {"product_update": {"image": "yes"}, "sync_unpublished_products": "no"}
    problems = validate_integration(config(settings).integrations[0], 0, target_kind="exactonline")
    assert "integrations[0].settings.product_update.image: must be true or false" in problems
    assert "integrations[0].settings.sync_unpublished_products: must be true or false" in problems
    assert validate_integration(config({"product_update": {"image": True}}).integrations[0], 0) == []
