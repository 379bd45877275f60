from decimal import Decimal
from typing import Any

import pytest

from connectors.businesscentral.normalise import normalise_customer as bc_customer
from connectors.exactonline.normalise import normalise_item as exact_item
from connectors.woocommerce.normalise import normalise_customer, normalise_order, normalise_product
from gateway.model import StockLevel
from tests.mapping_support import fixture, integration
from transforms import (
    MappingError,
    MappingSpecError,
    build_mapping,
    decide_debtor,
    default_mapping,
    documents,
    dumps,
    effective_mapping,
)
from transforms.registry import catalogue

CONTEXT = {
    "account": "acc-guid",
    "items": {"MEEL-SPELT-5": "i-1", "BAK-PROFI-R40": "i-2", "OVEN-HS": "i-3", "VERZEND": "i-4", "FEE": "i-5"},
}
TABLES = {"vat_codes": {"entries": {"21": "2", "9": "1", "0": "0"}}, "payment_conditions": {"entries": {"ideal": "ID"}}}


def no_floats(value: Any) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(no_floats(v) for v in value.values())
    if isinstance(value, list):
        return all(no_floats(v) for v in value)
    return True


def test_defaults_ship_for_every_flow_and_target_the_connectors_support():
    pairs = set(catalogue())
    for flow in ("orders", "customers", "products"):
        for target in ("exactonline", "woocommerce", "businesscentral"):
            assert (flow, target) in pairs
    assert ("stock", "woocommerce") in pairs
    assert documents("orders", "exactonline") == ["sales_order", "direct_invoice", "sales_entry", "sales_invoice"]
    assert documents("orders", "businesscentral")[0] == "sales_order"


def test_default_exact_sales_order_from_a_woocommerce_company_order():
    order = normalise_order(fixture("woocommerce/order_company_coupon.json"))
    mapping = build_mapping(integration(settings={"shipping_item": "VERZEND"}, tables=TABLES), "orders", "exactonline")
    payload = mapping.apply(order, CONTEXT)
    assert payload["OrderedBy"] == "acc-guid" and payload["YourRef"] == "5120"
    assert payload["OrderDate"] == "2026-03-15"  # 23:12 UTC is the 15th in Amsterdam
    assert payload["PaymentCondition"] == "ID" and "ShippingMethod" not in payload  # no table: left out
    lines = payload["SalesOrderLines"]
    assert [line["Item"] for line in lines] == ["i-1", "i-2", "i-3", "i-4", "i-5"]
    assert lines[0] == {
        "Item": "i-1",
        "Description": "Speltmeel 5 kg",
        "Quantity": Decimal("3"),
        "UnitPrice": Decimal("11.25"),
        "VATCode": "1",
    }
    assert lines[3]["Description"] == "PostNL zakelijk" and lines[3]["UnitPrice"] == Decimal("6.95")
    assert lines[4]["Description"] == "Toeslag koelverpakking"
    assert no_floats(payload)
    assert dumps(payload).count("11.25") == 1


@pytest.mark.parametrize("document", ["sales_order", "sales_invoice", "direct_invoice", "sales_entry"])
def test_every_exact_document_type_maps(document):
    order = normalise_order(fixture("woocommerce/order_person_de.json"))
    tables = {**TABLES, "revenue_accounts": {"default": "8000", "entries": {"DE": "8100"}}}
    setup = integration(settings={"document_type": document}, tables=tables)
    payload = build_mapping(setup, "orders", "exactonline").apply(order, placeholders=True)
    assert no_floats(payload)
    if document == "sales_entry":
        assert payload["Customer"] == "<account>"
        assert payload["SalesEntryLines"][0]["GLAccount"] == "<gl_accounts:8100>"
        assert payload["SalesEntryLines"][0]["AmountFC"] == Decimal("30.58")
    else:
        lines = payload["SalesOrderLines" if document == "sales_order" else "SalesInvoiceLines"]
        assert lines[0]["UnitPrice"] == Decimal("10.1933")
    if document == "direct_invoice":
        assert payload["Type"] == 8023 and payload["Warehouse"] == "<warehouse>"


def test_every_default_mapping_compiles_and_maps_a_realistic_record():
    records = {
        "order": normalise_order(fixture("woocommerce/order_company_coupon.json")),
        "customer": normalise_customer(fixture("woocommerce/customer_company.json")),
        "product": normalise_product(
            fixture("woocommerce/product_variable.json"), fixture("woocommerce/product_variations.json")
        ),
        "stock": StockLevel(
            source="exactonline", sku="A", on_hand=Decimal(12), reserved=Decimal(2), available=Decimal(10)
        ),
    }
    tables = {**TABLES, "revenue_accounts": {"default": "8000"}}
    for (flow, target), docs in catalogue().items():
        for document, default in docs.items():
            setup = integration(settings={"document_type": document}, tables=tables)
            payload = build_mapping(setup, flow, target).apply(records[default.record], placeholders=True)
            assert payload and no_floats(payload), (flow, target, document)


def test_customers_company_gets_a_contact_and_person_does_not():
    mapping = build_mapping(integration(), "customers", "exactonline")
    company = mapping.apply(normalise_customer(fixture("woocommerce/customer_company.json")), placeholders=True)
    assert company["Account"]["Name"] == "Bakkerij Ünal B.V."
    assert company["Account"]["VATNumber"] == "BE0123456789" and company["Account"]["Status"] == "C"
    assert company["Contact"] == {
        "Account": "<account>",
        "FirstName": "Zoë",
        "LastName": "de Vries-Öztürk",
        "Email": "inkoop@bakkerij-unal.nl",
        "Phone": "+32 2 123 45 67",
    }
    person = mapping.apply(bc_customer(fixture("businesscentral/customer_person.json")), placeholders=True)
    assert person["Account"]["Name"] == "René François" and "Contact" not in person
    bc = build_mapping(integration(), "customers", "businesscentral")
    assert bc.apply(bc_customer(fixture("businesscentral/customer_person.json")))["type"] == "Person"


def test_default_debtor_sends_every_order_to_one_customer():
    order = normalise_order(fixture("woocommerce/order_company_coupon.json"))
    debtor = decide_debtor(order.customer, {"default_debtor": "1000"})
    assert (debtor.kind, debtor.code, debtor.name) == ("default", "1000", None)
    company = decide_debtor(order.customer, {})
    assert company.kind == "company" and company.contact.first_name == "Zoë"
    assert decide_debtor(order.customer, {"default_debtor": "1000"}, flow="customers").kind == "company"
    custom = integration(
        settings={"default_debtor": "1000"},
        mappings={"orders": {"exactonline": {"Description": "debtor.kind & ' ' & debtor.code"}}},
    )
    payload = build_mapping(custom, "orders", "exactonline").apply(order, placeholders=True)
    assert payload["Description"] == "default 1000"


def test_override_keeps_field_type_adds_custom_fields_and_removes_fields():
    overrides = {
        "orders": {
            "exactonline": {
                "YourRef": "'WC-' & number",
                "Remarks": "$join(notes, ' / ')",
                "Currency": False,
                "SalesOrderLines": {
                    "products": {
                        "UnitPrice": "$round(unit_price_excl, 2)",
                        "Discount": {
                            "_expr": "$number(total_excl) = 0 ? null : $div(discount_excl, total_excl, 4)",
                            "_type": "decimal",
                        },
                    }
                },
            }
        }
    }
    setup = integration(mappings=overrides, tables=TABLES)
    order = normalise_order(fixture("woocommerce/order_company_coupon.json"))
    payload = build_mapping(setup, "orders", "exactonline").apply(order, placeholders=True)
    assert payload["YourRef"] == "WC-5120" and "Currency" not in payload
    assert payload["Remarks"] == "Graag vóór 9 uur leveren."
    first = payload["SalesOrderLines"][0]
    assert first["UnitPrice"] == Decimal("12.50") and isinstance(first["UnitPrice"], Decimal)  # type kept
    assert first["Discount"] == Decimal("0.1111")
    assert "Discount" not in payload["SalesOrderLines"][2]  # the free glove: null leaves the field out
    effective = effective_mapping(integration(), "orders", "exactonline")
    assert effective.spec == default_mapping("orders", "exactonline").spec  # no override: the default


def test_mapping_errors_name_record_field_expression_and_reason():
    order = normalise_order(fixture("woocommerce/order_company_coupon.json"))
    mapping = build_mapping(integration(tables=TABLES), "orders", "exactonline")
    with pytest.raises(MappingError) as info:
        mapping.apply(order, {"account": "a", "items": {"MEEL-SPELT-5": "i-1"}})
    error = info.value
    assert error.record == "woocommerce order 5120"
    fields = [p.field for p in error.problems]
    assert fields == [
        "SalesOrderLines.products[2].Item",
        "SalesOrderLines.products[3].Item",
        "SalesOrderLines.shipping[4].Item",
        "SalesOrderLines.fees[5].Item",
    ]
    first = error.problems[0]
    assert first.expression == "$id('items', sku)"
    assert (
        first.reason == "no items:BAK-PROFI-R40 id was resolved for this record (the worker passes it in the context)"
    )
    assert str(error).startswith("woocommerce order 5120: cannot be mapped with shop-to-erp: orders -> exactonline")


def test_arithmetic_on_money_text_explains_itself_and_floats_never_escape():
    order = normalise_order(fixture("woocommerce/order_person_de.json"))
    bad = integration(mappings={"orders": {"exactonline": {"Description": "total_incl * 2"}}})
    with pytest.raises(MappingError) as info:
        build_mapping(bad, "orders", "exactonline").apply(order, placeholders=True)
    assert "use $add, $sub, $mul, $div or $round" in info.value.problems[0].reason
    floaty = integration(
        mappings={"orders": {"exactonline": {"Weight": "$number(total_incl) * 1.1", "Text": "$mul(total_incl, '1.1')"}}}
    )
    payload = build_mapping(floaty, "orders", "exactonline").apply(order, placeholders=True)
    assert isinstance(payload["Weight"], Decimal) and payload["Text"] == "60.896"


def test_type_conversion_and_required_fields_fail_with_a_reason():
    order = normalise_order(fixture("woocommerce/order_person_de.json"))
    bad = integration(
        mappings={
            "orders": {
                "exactonline": {"YourRef": "nothing_here", "SalesOrderLines": {"products": {"Quantity": "'three'"}}}
            }
        }
    )
    with pytest.raises(MappingError) as info:
        build_mapping(bad, "orders", "exactonline").apply(order, placeholders=True)
    reasons = {p.field: p.reason for p in info.value.problems}
    assert reasons["YourRef"] == "is required but the expression gave nothing"
    assert reasons["SalesOrderLines.products[1].Quantity"].startswith("expected a decimal number")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("'Shop ' & (number", "does not compile: Expected ) before end of expression"),
        ("$eval2(number)", "unknown function $eval2"),
        ("$recrod.number", "unknown variable $recrod"),
        ("", "the expression is empty"),
    ],
)
def test_mappings_that_cannot_compile_are_rejected(expression, reason):
    bad = integration(mappings={"orders": {"exactonline": {"Description": expression}}})
    with pytest.raises(MappingSpecError) as info:
        build_mapping(bad, "orders", "exactonline")
    assert info.value.problems[0][0] == "Description" and reason in info.value.problems[0][1]


def test_runaway_expressions_stop_with_a_mapping_error():
    order = normalise_order(fixture("woocommerce/order_person_de.json"))
    loop = integration(
        mappings={"orders": {"exactonline": {"Description": "($f := function($n) { $f($n + 1) }; $f(0))"}}}
    )
    with pytest.raises(MappingError) as info:
        build_mapping(loop, "orders", "exactonline").apply(order, placeholders=True)
    assert "too" in info.value.problems[0].reason  # too deeply / too long


def test_woocommerce_product_and_stock_mappings():
    product = exact_item(fixture("exactonline/item.json"))
    payload = build_mapping(integration(), "products", "woocommerce").apply(product, {"categories": {"Tassen": 7}})
    assert payload["sku"] == "KOP-TASSE-BL" and payload["regular_price"] == "10.19" and payload["status"] == "publish"
    assert payload["categories"] == [{"id": 7}]
    assert payload["images"] == [{"src": "https://start.exactonline.nl/docs/images/tasse.png"}]
    variable = normalise_product(fixture("woocommerce/product_variable.json"))
    attributes = build_mapping(integration(), "products", "woocommerce").apply(variable, placeholders=True)[
        "attributes"
    ]
    assert attributes[2] == {"name": "Land van herkomst", "options": ["België"], "variation": False, "visible": True}
    stock = StockLevel(
        source="exactonline", sku="A", on_hand=Decimal(12), reserved=Decimal(2), available=Decimal("10.6")
    )
    assert build_mapping(integration(), "stock", "woocommerce").apply(stock) == {
        "manage_stock": True,
        "stock_quantity": 11,
    }


def test_public_names_of_transforms_are_pinned():
    import transforms

    assert transforms.__all__ == sorted(transforms.__all__)
    assert set(transforms.__all__) == {
        "CompiledMapping", "Debtor", "DefaultMapping", "EffectiveMapping", "FieldProblem", "FunctionError",
        "MappingError", "MappingSpecError", "build_mapping", "compile_mapping", "decide_debtor", "default_mapping",
        "documents", "dumps", "effective_mapping", "mapping_input", "validate_integration",
    }  # fmt: skip
    assert all(hasattr(transforms, name) for name in transforms.__all__)


def test_mapping_errors_are_permanent_so_the_worker_fails_at_once():
    from gateway.errors import PermanentError
    from gateway.model import NormaliseError

    assert issubclass(MappingError, PermanentError) and issubclass(NormaliseError, PermanentError)


def test_payload_json_keeps_every_digit():
    assert (
        dumps({"a": Decimal("10.1933"), "b": [Decimal("1E+2"), "x"], "c": None})
        == '{"a":10.1933,"b":[100,"x"],"c":null}'
    )
    with pytest.raises(TypeError, match="float"):
        dumps({"a": 0.1})


class _Lookup(dict):
    """A context mapping resolved lazily by the worker (Exact's G/L accounts by code): `get` may raise."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get(self, key: Any, default: Any = None) -> Any:
        raise self.error


@pytest.mark.parametrize(
    "mappings",
    [
        {},  # the default: every line's GLAccount
        {"SalesEntryLines": {"products": {"GLAccount": "($code := '8000'; $id('gl_accounts', $code))"}}},  # engine
        {"Description": "$id('gl_accounts', '8000')"},  # a header field
        {"SalesEntryLines": {"products": {"_each": "$id('gl_accounts', '8000') ? lines : lines"}}},  # the `_each`
    ],
    ids=["lines", "engine", "header", "each"],
)
def test_errors_of_a_lazy_context_lookup_leave_the_mapper_as_they_are(mappings):
    from gateway.errors import PermanentError, Unavailable

    order = normalise_order(fixture("woocommerce/order_person_de.json"))
    tables = {**TABLES, "revenue_accounts": {"default": "8000"}}
    setup = integration(
        settings={"document_type": "sales_entry"}, tables=tables, mappings={"orders": {"exactonline": mappings}}
    )
    mapping = build_mapping(setup, "orders", "exactonline")
    for error in (PermanentError("G/L account '8000' does not exist in Exact Online"), Unavailable("503")):
        with pytest.raises(type(error)) as info:
            mapping.apply(order, {"account": "a", "gl_accounts": _Lookup(error)})
        assert info.value is error  # not a MappingError "failed (PermanentError)": the worker sees the lookup's own
