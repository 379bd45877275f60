"""No request, however malformed, makes the receiver answer 500 (hypothesis over real HTTP)."""

from __future__ import annotations

import hmac
import json

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import keys
from handlers.signatures import MAX_NESTING
from tests.conftest import woo_headers
from tests.samples import SECRETS

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


# --- signed bodies with any JSON: lone surrogates and deep nesting included -----------------------------

# Text with lone surrogates (written as \uXXXX escapes by json.dumps), control characters and non-ASCII.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)


def _nested(value: object, depth: int, as_object: bool) -> object:
    for _ in range(depth):
        value = {"n": value} if as_object else [value]
    return value


DEPTHS = st.integers(1, 320) | st.integers(MAX_NESTING - 4, MAX_NESTING + 2)
DEEP = st.builds(_nested, st.none() | ANY_TEXT, DEPTHS, st.booleans())
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT | DEEP,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3),
    max_leaves=8,
)


def _signed(endpoint: str, member: bytes) -> tuple[bytes, dict[str, str]]:
    """A body for `endpoint` (tests/samples.py's config), signed and shaped as its sender's, holding `member`."""
    if endpoint == "shop":
        body = b'{"id": 7, "x": ' + member + b"}"
        return body, woo_headers(body)
    if endpoint == "sq":
        body = b'{"id": "n1", "topic": "order.create", "data": {"orderId": "o1"}, "x": ' + member + b"}"
        key = bytes.fromhex(SECRETS["SQ_SECRET"])
        return body, {"squarespace-signature": hmac.new(key, body, "sha256").hexdigest()}
    if endpoint == "bc":
        item = b'{"clientState": "%s", "subscriptionId": "s", "resource": "items(1)", "changeType": "updated", "x": '
        return b'{"value": [' + item % SECRETS["BC_STATE"].encode() + member + b"}]}", {}
    content = b'{"Topic": "Items", "Action": "Update", "Key": "k", "Division": 1, "x": ' + member + b"}"
    code = hmac.new(SECRETS["EXACT_SECRET"].encode(), content, "sha256").hexdigest().upper().encode()
    return b'{"Content": ' + content + b', "HashCode": "' + code + b'"}', {}


def _stored(connection: redis.Redis) -> set[bytes]:
    return set(connection.scan_iter(match=keys.PREFIX + "*"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(["shop", "sq", "bc", "exact-hooks"]), value=ANY_JSON, ascii_only=st.booleans())
def test_a_signed_body_of_any_json_is_never_a_5xx(http: httpx.Client, rconn: redis.Redis, endpoint, value, ascii_only):
    """Lone surrogates (escaped, or written raw: not UTF-8) and nesting deeper than the limit are a 400 that
    stores nothing in Redis; the rest is taken."""
    member = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    body, headers = _signed(endpoint, member)
    before = _stored(rconn)
    response = http.post(f"/webhooks/{endpoint}", content=body, headers=headers)
    assert response.status_code in {200, 202, 400}, response.text
    if response.status_code == 400:
        assert response.json()["error"] == "malformed"
        assert response.json()["message"] in {
            "body holds a lone surrogate escape (\\ud800-\\udfff), which is not Unicode",
            "body is not valid UTF-8",  # a lone surrogate written as it is (not as an escape)
            f"body nests arrays and objects deeper than {MAX_NESTING} levels",
        }
        assert _stored(rconn) == before  # nothing queued, nothing marked as seen
    else:
        assert response.json()["queued"] + response.json()["duplicates"] == 1
