"""Property: no input makes a normaliser raise anything but NormaliseError."""

import contextlib
import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.businesscentral import normalise as bc
from connectors.exactonline import normalise as exact
from connectors.squarespace import normalise as sq
from connectors.woocommerce import normalise as wc
from gateway.model import NormaliseError
from tests.mapping_support import fixture

NORMALISERS = [
    (wc.normalise_order, "woocommerce/order_company_coupon.json"),
    (wc.normalise_customer, "woocommerce/customer_company.json"),
    (wc.normalise_product, "woocommerce/product_variable.json"),
    (wc.normalise_stock, "woocommerce/product_variable.json"),
    (sq.normalise_order, "squarespace/order.json"),
    (bc.normalise_sales_order, "businesscentral/sales_order.json"),
    (bc.normalise_customer, "businesscentral/customer_company.json"),
    (bc.normalise_item, "businesscentral/item.json"),
    (bc.normalise_item_stock, "businesscentral/item.json"),
    (exact.normalise_sales_order, "exactonline/sales_order.json"),
    (exact.normalise_account, "exactonline/account.json"),
    (exact.normalise_item, "exactonline/item.json"),
    (exact.normalise_stock_position, "exactonline/stock_position.json"),
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        ["", "0", "12.50", "1e999", "-0", "NaN", "/Date(99999999999999999)/", "2026-13-45T99:00:00", "[]"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)


def _run(func, payload):
    with contextlib.suppress(NormaliseError):
        func(payload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=json_values, which=st.integers(min_value=0, max_value=len(NORMALISERS) - 1))
def test_arbitrary_json_raises_only_normalise_error(payload, which):
    _run(NORMALISERS[which][0], payload)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON document."""
    yield prefix, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), replacement=json_values, which=st.integers(min_value=0, max_value=len(NORMALISERS) - 1))
def test_realistic_payloads_with_one_field_corrupted_raise_only_normalise_error(data, replacement, which):
    func, name = NORMALISERS[which]
    payload = copy.deepcopy(fixture(name))
    paths = [p for p, _ in _paths(payload) if p]
    path = data.draw(st.sampled_from(paths))
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    _run(func, payload)
