"""Properties of the mapper: only Koppel's own errors escape, no float leaves it, and the fast
path gives exactly what the JSONata engine gives."""

import contextlib
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonata.utils import Utils

from connectors.woocommerce.normalise import normalise_customer, normalise_order, normalise_product
from gateway.model import Address, Customer, Order, OrderLine, Person, ShippingLine
from tests.mapping_support import fixture, integration
from transforms import MappingError, MappingSpecError, build_mapping
from transforms.datamapper import _expressions
from transforms.errors import FunctionError
from transforms.expressions import SLOW, Expression, ExpressionError
from transforms.functions import FUNCTIONS, RUN, Run
from transforms.inputs import mapping_input
from transforms.registry import catalogue

money = st.decimals(min_value=Decimal("-99999"), max_value=Decimal("99999"), places=2, allow_nan=False)
text = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["Keizersgracht 123-A", "België", "NL", "DE", ""]))
lines = st.builds(
    OrderLine,
    sku=text,
    name=text,
    quantity=st.decimals(min_value=Decimal("-5"), max_value=Decimal("1000"), places=3, allow_nan=False),
    net_unit_price_excl=st.one_of(st.none(), money),
    total_excl=st.one_of(st.none(), money),
    tax_total=st.one_of(st.none(), money),
    tax_rate=st.one_of(st.none(), st.sampled_from([Decimal(0), Decimal(9), Decimal(21), Decimal("5.5")])),
)
addresses = st.one_of(
    st.none(), st.builds(Address, company=text, first_name=text, street=text, country=text, city=text)
)
orders = st.builds(
    Order,
    source=st.just("woocommerce"),
    id=st.text(min_size=1, max_size=10),
    number=st.text(max_size=40),
    currency=text,
    payment_method=text,
    customer=st.builds(
        Customer,
        source=st.just("woocommerce"),
        company_name=text,
        contact=st.builds(Person, first_name=text, email=text),
        email=text,
    ),
    billing_address=addresses,
    shipping_address=addresses,
    lines=st.lists(lines, max_size=4),
    shipping_lines=st.lists(
        st.builds(ShippingLine, method_title=text, total_excl=st.one_of(st.none(), money)), max_size=2
    ),
    notes=st.lists(st.text(max_size=20), max_size=2),
)

TABLES = {"vat_codes": {"entries": {"21": "2"}}, "revenue_accounts": {"default": "8000"}}


def _floatless(value):
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(_floatless(v) for v in value.values())
    if isinstance(value, list):
        return all(_floatless(v) for v in value)
    return True


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=orders,
    document=st.sampled_from(["sales_order", "sales_invoice", "direct_invoice", "sales_entry"]),
    target=st.sampled_from(["exactonline", "businesscentral", "woocommerce"]),
    placeholders=st.booleans(),
)
def test_any_order_maps_or_fails_with_a_mapping_error_and_never_emits_floats(order, document, target, placeholders):
    mapping = build_mapping(integration(settings={"document_type": document}, tables=TABLES), "orders", target)
    try:
        payload = mapping.apply(order, {"account": "a", "customer": "c", "items": {}}, placeholders=placeholders)
    except MappingError as exc:
        assert exc.problems and all(p.field and p.reason for p in exc.problems)
        return
    assert _floatless(payload)


@settings(max_examples=300, deadline=None)
@given(source=st.text(max_size=40))
def test_any_text_compiles_or_is_rejected_with_expression_error(source):
    with contextlib.suppress(ExpressionError):
        Expression(source, FUNCTIONS)


json_data = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10) | st.sampled_from(["12.50", "NL", ""]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "sku", "lines"]), inner, max_size=4)
    ),
    max_leaves=15,
)
EXPRESSIONS = [
    "a",
    "a.b",
    "a & b",
    "a ?? 'x'",
    "a ?: 'x'",
    "a ? b : 'no'",
    "a = 'NL'",
    "a != b",
    "a and b",
    "a or b",
    "$round(a, 2)",
    "$table('t', [a, b], null)",
    "$table('t', a)",
    "$country(a)",
    "$street(a)",
    "$left(a, 3)",
    "$add(a, b)",
    "$mul(a, b)",
    "$div(a, b)",
    "$formatDate(a)",
    "$id('items', a)",
    "[a, b, 'c']",
    "$record.a",
    "$coalesce(a, b)",
    "$upper(a)",
    "sku & ':' & $index",
    "lines.sku",
    "$splitStreet(a).number",
]
COMPILED = [Expression(e, FUNCTIONS) for e in EXPRESSIONS]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_data, which=st.integers(min_value=0, max_value=len(EXPRESSIONS) - 1))
def test_fast_path_equals_the_engine_and_only_koppel_errors_escape(data, which):
    expr = COMPILED[which]
    variables = {"record": data, "context": {}, "settings": {}, "index": 1}
    token = RUN.set(Run(placeholders=True))
    try:
        try:
            slow = Utils.convert_nulls(expr._engine.evaluate(data, dict(variables)))
            slow_error = None
        except Exception as exc:  # the engine's own errors, compared by kind below
            slow, slow_error = None, exc
        try:
            value = expr.evaluate(data, variables)
        except (ExpressionError, FunctionError):
            assert slow_error is not None
            return
        assert slow_error is None
        if expr._fast is not None:
            fast = expr._fast(data, variables)
            if fast is not SLOW:
                assert (fast == slow and type(fast) is type(slow)) or (isinstance(slow, list) and list(slow) == fast)
        assert value == slow or (isinstance(slow, list) and list(slow) == value)
    finally:
        RUN.reset(token)


def test_every_default_expression_gives_the_engine_result_on_real_records():
    """The fast path is an optimisation only: for the shipped mappings and realistic records, each
    expression's fast result equals the JSONata engine's."""
    records = {
        "order": normalise_order(fixture("woocommerce/order_company_coupon.json")),
        "customer": normalise_customer(fixture("woocommerce/customer_company.json")),
        "product": normalise_product(fixture("woocommerce/product_variable.json")),
    }
    checked = 0
    for (flow, target), docs in catalogue().items():
        for document, default in docs.items():
            if default.record not in records:
                continue
            try:
                mapping = build_mapping(integration(settings={"document_type": document}, tables=TABLES), flow, target)
            except MappingSpecError:  # pragma: no cover - defaults compile (tested elsewhere)
                raise
            data = mapping_input(records[default.record], {})
            variables = {"record": data, "context": {}, "settings": {}, "index": 1}
            token = RUN.set(Run(mapping.tables, {}, True))
            try:
                for expr in _expressions(mapping.root):
                    for scope in [data, *data.get("lines", [])]:
                        try:
                            fast = expr._fast(scope, variables) if expr._fast else SLOW
                        except FunctionError:
                            continue
                        if fast is SLOW:
                            continue
                        try:
                            slow = Utils.convert_nulls(expr._engine.evaluate(scope, dict(variables)))
                        except FunctionError:
                            continue
                        assert fast == slow, (flow, target, document, expr.source)
                        checked += 1
            finally:
                RUN.reset(token)
    assert checked > 100
