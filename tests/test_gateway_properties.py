"""No request, however malformed, makes the receiver answer 500 (hypothesis over real HTTP)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

ENDPOINTS = ["shop", "sq", "bc", "exact-hooks", "unknown", "%00", "a%2Fb"]
HEADER_NAMES = st.sampled_from(
    [
        "x-wc-webhook-signature",
        "x-wc-webhook-topic",
        "x-wc-webhook-resource",
        "squarespace-signature",
        "content-type",
        "content-length-x",
        "x-wc-webhook-delivery-id",
        "x-custom",
    ]
)
# What an HTTP client can send: printable ASCII without surrounding whitespace.
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).filter(
    lambda value: value == value.strip()
)
BODIES = st.one_of(
    st.binary(max_size=2048),
    st.just(b""),
    st.just(b"webhook_id=12"),
    st.just(b'{"value": [{"clientState": "x"}]}'),
    st.just(b'{"Content": {"Topic": "Items"}, "HashCode": "AB"}'),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=20,
    ).map(lambda value: __import__("json").dumps(value).encode()),
)
QUERY = st.dictionaries(st.sampled_from(["validationToken", "x", ""]), HEADER_VALUES, max_size=2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=BODIES,
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES),
    query=QUERY,
)
def test_no_input_produces_a_500(http: httpx.Client, endpoint, body, headers, query):
    response = http.post(f"/webhooks/{endpoint}", content=body, headers=headers, params=query)
    assert response.status_code in {200, 202, 400, 401, 404, 413}, response.text
    if response.status_code >= 400:
        problem = response.json()
        assert problem["error"] and problem["message"]
