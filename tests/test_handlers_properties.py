"""Property tests: every handler is total over arbitrary requests and exact about signatures."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.config import Endpoint
from gateway.envelope import Envelope
from gateway.errors import MalformedRequest, SignatureRejected, WebhookRejected
from gateway.ingest import Draft
from handlers import businesscentral, exactonline, squarespace, woocommerce
from handlers.base import Incoming, Outcome
from handlers.signatures import MAX_NESTING, utf8

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WC_SECRET = "wc-s3cret&amp;&#039;-k7Q"
WC_KEY = b"wc-s3cret&'-k7Q"
SQ_SECRET = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
BC_SECRET = "bc-client-state-6d2e"
EXACT_SECRET = "exact-secret-41c7"

ENDPOINTS = {
    "woocommerce": Endpoint(id="shop", kind="woocommerce", secret=SecretStr(WC_SECRET)),
    "squarespace": Endpoint(id="sq", kind="squarespace", secret=SecretStr(SQ_SECRET)),
    "businesscentral": Endpoint(id="bc", kind="businesscentral", secret=SecretStr(BC_SECRET)),
    "exactonline": Endpoint(id="exact", kind="exactonline", secret=SecretStr(EXACT_SECRET)),
}
HANDLERS = {
    "woocommerce": woocommerce.handle,
    "squarespace": squarespace.handle,
    "businesscentral": businesscentral.handle,
    "exactonline": exactonline.handle,
}
SECRETS = (WC_SECRET, WC_KEY.decode(), SQ_SECRET, BC_SECRET, EXACT_SECRET)

# Text including lone surrogates, control characters and non-ASCII.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
header_names = (
    st.sampled_from(
        [
            "x-wc-webhook-signature",
            "x-wc-webhook-topic",
            "x-wc-webhook-id",
            "x-wc-webhook-delivery-id",
            "x-wc-webhook-source",
            "X-WC-Webhook-Signature",
            "squarespace-signature",
            "content-type",
        ]
    )
    | any_text
)
headers = st.dictionaries(header_names, any_text, max_size=6)
queries = st.dictionaries(st.sampled_from(["validationToken", "validationtoken"]) | any_text, any_text, max_size=3)


def nested(value: object, depth: int, as_object: bool) -> object:
    """`value` inside `depth` arrays (or objects)."""
    for _ in range(depth):
        value = {"n": value} if as_object else [value]
    return value


# Arrays and objects nested about as deep as a body may be (signatures.MAX_NESTING), and deeper.
deep_values = st.builds(
    nested,
    st.none() | any_text,
    st.integers(1, 320) | st.sampled_from([MAX_NESTING - 2, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1]),
    st.booleans(),
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text
json_values = st.recursive(
    scalars | deep_values,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)
# Objects shaped like the senders' payloads: realistic values most of the time, anything otherwise.
short_text = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)


def mostly(good: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly `good`, sometimes any JSON value (which shrinks towards `good`)."""
    return st.integers(0, 3).flatmap(lambda pick: json_values if pick == 3 else good)


woo_like = st.fixed_dictionaries(
    {"id": mostly(st.integers(1, 10**9))},
    optional={
        "arg": mostly(st.integers(1, 10**6)),
        "date_modified_gmt": mostly(st.sampled_from(["2026-03-14T13:02:13", ""])),
        "status": json_values,
    },
)
squarespace_like = st.fixed_dictionaries(
    {
        "id": mostly(st.uuids().map(str)),
        "topic": mostly(st.sampled_from(["order.create", "order.update", "extension.uninstall", "x"])),
    },
    optional={
        "websiteId": mostly(short_text),
        "data": mostly(st.fixed_dictionaries({"orderId": mostly(short_text)})),
    },
)
exact_content_like = st.fixed_dictionaries(
    {
        "Topic": mostly(short_text),
        "Action": mostly(st.sampled_from(["Update", "Delete"])),
        "Key": mostly(st.uuids().map(str)),
        "Division": mostly(st.integers(1, 10**7) | short_text),
    },
    optional={"EventCreatedOn": mostly(short_text), "ExactOnlineEndpoint": short_text},
)
bc_item_like = st.fixed_dictionaries(
    {
        "subscriptionId": mostly(short_text),
        "resource": mostly(
            st.sampled_from(
                [
                    "api/v2.0/companies(a)/items(b)",
                    "/api/v2.0/companies(a)/salesOrders('x''y')",
                    "api/v2.0/companies(a)/customers?$filter=lastDateTimeModified%20gt%202026-01-01T00:00:00Z",
                    "customers?$filter=x gt 2026",
                    "/",
                    "(",
                    "a('",
                    "https://h/api/v2.0/companies(a)/items%28b%29",
                ]
            )
            | any_text
        ),
        "changeType": mostly(st.sampled_from(["created", "updated", "deleted", "collection"])),
    },
    optional={"lastModifiedDateTime": mostly(short_text), "expirationDateTime": json_values},
)


WOO_TOPICS = st.sampled_from(["order.created", "order.deleted", "product.updated", "action.wc_x"])


def encoded(values: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """JSON text of `values`, escaped to ASCII or not (lone surrogates then encoded as they are)."""
    return st.builds(
        lambda value, ascii_only: json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"),
        values,
        st.booleans(),
    )


def bodies(objects: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, arbitrary JSON, and (most often) JSON objects shaped like the sender's, some
    with a member nested about as deep as a body may be, or deeper."""
    with_deep = st.builds(lambda obj, deep: obj | {"x": deep} if isinstance(obj, dict) else obj, objects, deep_values)
    return st.binary(max_size=200) | encoded(json_values) | encoded(objects) | encoded(objects) | encoded(with_deep)


def check_total(kind: str, incoming: Incoming) -> Outcome | WebhookRejected:
    """The handler's outcome or its rejection (400 or 401, naming no secret); an outcome's events can be
    stored: each becomes an envelope's JSON, as the receiver's next step makes it."""
    try:
        outcome = HANDLERS[kind](incoming, ENDPOINTS[kind])
    except WebhookRejected as rejected:
        assert rejected.status in (400, 401)
        text = str(rejected)
        assert not any(secret in text for secret in SECRETS), text
        return rejected
    for event in outcome.events:
        Draft.wrap(event, source=kind, endpoint=ENDPOINTS[kind].id, received_at=datetime.now(UTC))
    return outcome


def woo_sign(body: bytes) -> str:
    return base64.b64encode(hmac.new(WC_KEY, body, hashlib.sha256).digest()).decode()


def sq_sign(body: bytes) -> str:
    return hmac.new(bytes.fromhex(SQ_SECRET), body, hashlib.sha256).hexdigest()


def exact_body(content: str) -> bytes:
    code = hmac.new(EXACT_SECRET.encode(), content.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return ('{"Content":' + content + ',"HashCode":"' + code.upper() + '"}').encode("utf-8", "surrogatepass")


# --- total over arbitrary input --------------------------------------------------------------------


@PROPERTY
@given(
    kind=st.sampled_from(sorted(HANDLERS)),
    body=bodies(woo_like | squarespace_like | st.fixed_dictionaries({"value": st.lists(bc_item_like, max_size=3)})),
    headers=headers,
    query=queries,
    method=st.sampled_from(["POST", "GET", "PUT"]),
)
def test_any_request_gives_an_outcome_or_a_rejection(kind, body, headers, query, method):
    check_total(kind, Incoming(method=method, headers=headers, query=query, body=body))


# --- validly signed input is never refused as unsigned ------------------------------------------


@PROPERTY
@given(body=bodies(woo_like), topic=WOO_TOPICS | WOO_TOPICS | any_text)
def test_woocommerce_signed_body_is_never_a_signature_error(body, topic):
    incoming = Incoming("POST", {"x-wc-webhook-signature": woo_sign(body), "x-wc-webhook-topic": topic}, {}, body)
    result = check_total("woocommerce", incoming)
    assert isinstance(result, Outcome | MalformedRequest)
    if isinstance(result, Outcome):
        assert result.status == 202
        assert len(result.events) == 1


@PROPERTY
@given(body=bodies(squarespace_like), upper=st.booleans())
def test_squarespace_signed_body_is_never_a_signature_error(body, upper):
    signature = sq_sign(body).upper() if upper else sq_sign(body)
    result = check_total("squarespace", Incoming("POST", {"squarespace-signature": signature}, {}, body))
    assert isinstance(result, Outcome | MalformedRequest)


@PROPERTY
@given(kind=st.sampled_from(["woocommerce", "squarespace"]), data=st.data())
def test_an_envelope_embedding_the_body_reads_as_the_model_encodes_it(kind, data):
    """Draft.wrap embeds a strictly parsed body as it is: the envelope must read the same as the model's."""
    body = data.draw(bodies(woo_like if kind == "woocommerce" else squarespace_like))
    if kind == "woocommerce":
        headers = {"x-wc-webhook-signature": woo_sign(body), "x-wc-webhook-topic": "order.created"}
    else:
        headers = {"squarespace-signature": sq_sign(body)}
    result = check_total(kind, Incoming("POST", headers, {}, body))
    if not isinstance(result, Outcome):
        return
    now = datetime.now(UTC)
    for event in result.events:
        assert event.payload_json in (None, body)
        draft = Draft.wrap(event, source=kind, endpoint="e", received_at=now)
        reference = Envelope.wrap(event, source=kind, endpoint="e", received_at=now)
        read, expected = json.loads(draft.json), json.loads(Draft.of(reference).json)  # as the inbox pump reads
        assert read | {"received_at": now} == expected | {"received_at": now}  # its "+00:00" is the model's "Z"
        assert Envelope.model_validate(read) == reference  # as the worker reads the job's argument


@PROPERTY
@given(items=st.lists(bc_item_like | json_values, max_size=4))
def test_businesscentral_items_with_the_client_state_are_never_a_signature_error(items):
    stated = [dict(item, clientState=BC_SECRET) if isinstance(item, dict) else item for item in items]
    body = json.dumps({"value": stated}).encode()
    result = check_total("businesscentral", Incoming("POST", {}, {}, body))
    assert isinstance(result, Outcome | MalformedRequest)
    if isinstance(result, Outcome):
        assert len(result.events) == len(items)
        assert all("clientState" not in event.payload for event in result.events)


@PROPERTY
@given(content=st.builds(json.dumps, exact_content_like | json_values) | any_text)
def test_exact_signed_content_is_never_a_signature_error(content):
    result = check_total("exactonline", Incoming("POST", {}, {}, exact_body(content)))
    assert isinstance(result, Outcome | MalformedRequest)


@PROPERTY
@given(token=any_text)
def test_businesscentral_handshake_echoes_or_refuses_with_400(token):
    result = check_total("businesscentral", Incoming("POST", {}, {"validationToken": token}, b""))
    if isinstance(result, Outcome):
        assert result.body == token
        assert 0 < len(token) <= 1024
    else:
        assert isinstance(result, MalformedRequest)


# --- any single changed byte is refused --------------------------------------------------------------


@st.composite
def flipped(draw: st.DrawFn, objects: st.SearchStrategy) -> tuple[bytes, bytes]:
    body = draw(bodies(objects).filter(bool))
    index = draw(st.integers(0, len(body) - 1))
    mask = draw(st.integers(1, 255))
    changed = bytearray(body)
    changed[index] ^= mask
    return body, bytes(changed)


@PROPERTY
@given(pair=flipped(woo_like))
def test_woocommerce_rejects_any_flipped_byte_with_401(pair):
    body, changed = pair
    headers = {"x-wc-webhook-signature": woo_sign(body), "x-wc-webhook-topic": "order.updated"}
    result = check_total("woocommerce", Incoming("POST", headers, {}, changed))
    assert isinstance(result, SignatureRejected)
    assert result.status == 401


@PROPERTY
@given(pair=flipped(squarespace_like))
def test_squarespace_rejects_any_flipped_byte_with_401(pair):
    body, changed = pair
    result = check_total("squarespace", Incoming("POST", {"squarespace-signature": sq_sign(body)}, {}, changed))
    assert isinstance(result, SignatureRejected)
    assert result.status == 401


@PROPERTY
@given(content=st.builds(json.dumps, exact_content_like), data=st.data())
def test_exact_rejects_any_flipped_byte_of_the_content(content, data):
    body = exact_body(content)
    start = len(b'{"Content":')
    index = data.draw(st.integers(start, start + len(content.encode()) - 1))
    changed = bytearray(body)
    # Any other byte; often one that keeps the JSON valid, so the signature is what refuses it.
    letters = st.sampled_from(b"aZ0x9").filter(lambda byte: byte != body[index])
    changed[index] = data.draw(letters | st.integers(0, 255).filter(lambda byte: byte != body[index]))
    result = check_total("exactonline", Incoming("POST", {}, {}, bytes(changed)))
    assert isinstance(result, WebhookRejected)


@PROPERTY
@given(items=st.lists(bc_item_like, min_size=1, max_size=3), data=st.data())
def test_businesscentral_rejects_any_changed_client_state(items, data):
    wrong = data.draw(any_text.filter(lambda s: s != BC_SECRET))
    target = data.draw(st.integers(0, len(items) - 1))
    stated = [dict(item, clientState=wrong if i == target else BC_SECRET) for i, item in enumerate(items)]
    body = json.dumps({"value": stated}).encode()
    result = check_total("businesscentral", Incoming("POST", {}, {}, body))
    if _depth(json.loads(body)) > MAX_NESTING:  # refused before it is parsed (400)
        assert isinstance(result, MalformedRequest) and "deeper than" in result.message
    elif _lone_surrogate(body):  # not Unicode: refused before any item is looked at (400, see test_gateway)
        assert isinstance(result, MalformedRequest) and "lone surrogate" in result.message
    else:
        assert isinstance(result, SignatureRejected)


def _lone_surrogate(body: bytes) -> bool:
    try:
        json.dumps(json.loads(body), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def _depth(value: object) -> int:
    """How deep arrays and objects nest in `value` (0 for a scalar)."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


# --- bodies no envelope could carry are refused with 400, for every kind -----------------------------


def signed(kind: str, member: bytes) -> Incoming:
    """A request of `kind`, validly signed and shaped, with `member` (JSON text) as one more member."""
    if kind == "woocommerce":
        body = b'{"id": 7, "x": ' + member + b"}"
        headers = {"x-wc-webhook-signature": woo_sign(body), "x-wc-webhook-topic": "order.created"}
        return Incoming("POST", headers, {}, body)
    if kind == "squarespace":
        body = b'{"id": "n1", "topic": "order.create", "data": {"orderId": "o1"}, "x": ' + member + b"}"
        return Incoming("POST", {"squarespace-signature": sq_sign(body)}, {}, body)
    if kind == "businesscentral":
        item = b'{"clientState": "%s", "subscriptionId": "s", "resource": "items(1)", "changeType": "updated", "x": '
        return Incoming("POST", {}, {}, b'{"value": [' + item % BC_SECRET.encode() + member + b"}]}")
    content = '{"Topic": "Items", "Action": "Update", "Key": "k", "Division": 1, "x": ' + member.decode() + "}"
    return Incoming("POST", {}, {}, exact_body(content))


def depth_of_body(kind: str, member_depth: int) -> int:
    """How deep a body of `signed(kind, ...)` nests, for a member nested `member_depth` deep."""
    return member_depth + (3 if kind == "businesscentral" else 2 if kind == "exactonline" else 1)


@pytest.mark.parametrize("kind", sorted(HANDLERS))
@pytest.mark.parametrize("member", [b'"\\ud800"', b'{"\\udfff": 1}', b'["a\\udc00b"]'])
def test_a_lone_surrogate_in_a_signed_body_is_a_400(kind, member):
    result = check_total(kind, signed(kind, member))
    assert isinstance(result, MalformedRequest)
    assert result.message == "body holds a lone surrogate escape (\\ud800-\\udfff), which is not Unicode"


@pytest.mark.parametrize("kind", sorted(HANDLERS))
@pytest.mark.parametrize("extra", [1, 2, 60, 100_000])
@pytest.mark.parametrize("as_object", [False, True])
def test_a_signed_body_nested_deeper_than_the_limit_is_a_400(kind, extra, as_object):
    depth = MAX_NESTING - depth_of_body(kind, 0) + extra
    member = b'{"a":' * depth + b"1" + b"}" * depth if as_object else b"[" * depth + b"1" + b"]" * depth
    result = check_total(kind, signed(kind, member))
    assert isinstance(result, MalformedRequest)
    assert result.message == f"body nests arrays and objects deeper than {MAX_NESTING} levels"


@pytest.mark.parametrize("kind", sorted(HANDLERS))
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_a_signed_body_nested_to_the_limit_is_accepted(kind, bom):
    """With a byte order mark the standard parser reads it (pydantic-core's refuses the mark): same limit."""
    depth = MAX_NESTING - depth_of_body(kind, 0)
    incoming = signed(kind, b"[" * depth + b"1" + b"]" * depth)
    if bom and kind == "woocommerce":
        body = bom + incoming.body
        incoming = Incoming("POST", {**incoming.headers, "x-wc-webhook-signature": woo_sign(body)}, {}, body)
    elif bom and kind == "squarespace":
        body = bom + incoming.body
        incoming = Incoming("POST", {"squarespace-signature": sq_sign(body)}, {}, body)
    elif bom:
        incoming = replace(incoming, body=bom + incoming.body)
    result = check_total(kind, incoming)
    assert isinstance(result, Outcome) and len(result.events) == 1


# --- wp_specialchars_decode against a literal port ----------------------------------------------------


def reference_wp_specialchars_decode(text: str) -> str:
    """A deliberately naive port: preg_replace in order, then strtr scanning position by position."""
    if "&" not in text:
        return text
    for pattern, flags, replacement in [
        (r"&#0*39;", 0, "&#039;"),
        (r"&#x0*27;", re.I, "&#x27;"),
        (r"&#0*34;", 0, "&#034;"),
        (r"&#x0*22;", re.I, "&#x22;"),
        (r"&#0*60;", 0, "&#060;"),
        (r"&#0*62;", 0, "&#062;"),
        (r"&#0*38;", 0, "&#038;"),
        (r"&#x0*26;", re.I, "&#x26;"),
    ]:
        text = re.sub(pattern, replacement, text, flags=flags)
    table = {
        "&#039;": "'", "&#x27;": "'", "&quot;": '"', "&#034;": '"', "&#x22;": '"', "&lt;": "<", "&#060;": "<",
        "&gt;": ">", "&#062;": ">", "&amp;": "&", "&#038;": "&", "&#x26;": "&",
    }  # fmt: skip
    keys = sorted(table, key=len, reverse=True)
    out, i = [], 0
    while i < len(text):
        key = next((k for k in keys if text.startswith(k, i)), None)
        if key is None:
            out.append(text[i])
            i += 1
        else:
            out.append(table[key])
            i += len(key)
    return "".join(out)


entity_soup = st.text(st.sampled_from(list("&#;xX0123456789amplgtquoAMPeacute ")), max_size=40)


@PROPERTY
@given(text=entity_soup | any_text)
def test_secret_decoding_matches_a_literal_port_of_wordpress(text):
    assert woocommerce.wp_specialchars_decode(text) == reference_wp_specialchars_decode(text)


@PROPERTY
@given(secret=any_text.filter(bool), body=st.binary(max_size=64))
def test_woocommerce_is_total_over_any_configured_secret(secret, body):
    endpoint = Endpoint(id="shop", kind="woocommerce", secret=SecretStr(secret))
    incoming = Incoming("POST", {"x-wc-webhook-signature": "x", "x-wc-webhook-topic": "order.created"}, {}, body)
    with contextlib.suppress(WebhookRejected):
        woocommerce.handle(incoming, endpoint)


ENTITIES = st.sampled_from(["&amp;", "&lt;", "&gt;", "&quot;", "&#039;", "&#39;", "&#x27;", "&eacute;", ""])
KEY_FORMS = st.sampled_from(["verbatim", "decoded", "other"])
secrets_with_entities = st.builds(lambda a, e, b: a + e + b, entity_soup | any_text, ENTITIES, any_text).filter(bool)


@PROPERTY
@given(
    secret=secrets_with_entities,
    legacy=st.booleans(),
    deliveries=st.lists(st.tuples(st.integers(1, 10**6), KEY_FORMS), max_size=8),
)
def test_woocommerce_accepts_exactly_its_keys_signatures_in_any_order(secret, legacy, deliveries):
    """The key that verified last is tried first (handlers/woocommerce.py): whatever the order of the keys the
    deliveries are signed with, a signature is accepted exactly when one of the endpoint's keys made it."""
    endpoint = Endpoint(id="shop", kind="woocommerce", secret=SecretStr(secret), woocommerce_legacy_secret=legacy)
    verbatim = utf8(secret)  # the key bytes of a text (lone surrogates included), as the handlers make them
    decoded = utf8(reference_wp_specialchars_decode(secret))
    keys = {"verbatim": verbatim, "decoded": decoded, "other": b"not-" + verbatim}
    allowed = {verbatim} if legacy else {verbatim, decoded}
    for order_id, which in deliveries:
        body = b'{"id":%d}' % order_id
        signature = base64.b64encode(hmac.new(keys[which], body, hashlib.sha256).digest()).decode()
        headers = {"x-wc-webhook-signature": signature, "x-wc-webhook-topic": "order.created"}
        incoming = Incoming("POST", headers, {}, body)
        if keys[which] in allowed:
            assert woocommerce.handle(incoming, endpoint).status == 202
        else:
            with pytest.raises(SignatureRejected):
                woocommerce.handle(incoming, endpoint)
