"""Property tests of Squarespace's signature check over many secrets (the configured one and those
Squarespace issued, handlers/squarespace.py) and of the issued-secrets store's reading (connectors/issued.py)."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors import issued
from gateway.config import Endpoint
from gateway.errors import MalformedRequest, SignatureRejected
from handlers.base import Incoming
from handlers.squarespace import handle

hex_secrets = st.binary(min_size=1, max_size=40).map(lambda b: b.hex())
cased = st.sampled_from([str.lower, str.upper])


def endpoint(secret: str) -> Endpoint:
    return Endpoint(id="sq", kind="squarespace", secret=SecretStr(secret))


def sign(secret: str, body: bytes) -> str:
    return hmac.new(bytes.fromhex(secret), body, hashlib.sha256).hexdigest()


def notification(order_id: str) -> bytes:
    return json.dumps({"id": f"n-{order_id}", "websiteId": "w", "subscriptionId": "s", "topic": "order.create",
                       "createdOn": "2026-04-22T22:18+00:00", "data": {"orderId": order_id}}).encode()  # fmt: skip


@given(configured=hex_secrets, issued_secrets=st.lists(hex_secrets, min_size=1, max_size=4), data=st.data(),
       order_id=st.text(min_size=1, max_size=30), case=cased)  # fmt: skip
def test_a_notification_signed_with_any_secret_of_the_endpoint_verifies(configured, issued_secrets, data, order_id,
                                                                       case):  # fmt: skip
    body = notification(order_id)
    signer = data.draw(st.sampled_from([configured, *issued_secrets]))
    incoming = Incoming("POST", {"squarespace-signature": case(sign(signer, body))}, {}, body, tuple(issued_secrets))
    [event] = handle(incoming, endpoint(configured)).events
    assert event.resource_id == order_id and event.delivery_key == f"n-{order_id}"


@given(configured=hex_secrets, issued_secrets=st.lists(hex_secrets, max_size=4), stranger=hex_secrets,
       body=st.binary(max_size=200))  # fmt: skip
def test_a_body_signed_with_no_secret_of_the_endpoint_is_refused(configured, issued_secrets, stranger, body):
    signature = sign(stranger, body)
    if any(sign(s, body) == signature for s in [configured, *issued_secrets]):
        return  # one key after all: HMAC pads a short key with zeros ("aa" and "aa00" sign alike)
    incoming = Incoming("POST", {"squarespace-signature": signature}, {}, body, tuple(issued_secrets))
    with pytest.raises(SignatureRejected):
        handle(incoming, endpoint(configured))


@given(configured=hex_secrets, junk=st.lists(st.text(max_size=12), max_size=3), body=st.binary(max_size=100),
       signature=st.text(max_size=80))  # fmt: skip
def test_anything_a_sender_sends_is_an_event_or_a_4xx_never_a_crash(configured, junk, body, signature):
    incoming = Incoming("POST", {"squarespace-signature": signature}, {}, body, tuple(junk))
    try:
        outcome = handle(incoming, endpoint(configured))
    except (SignatureRejected, MalformedRequest) as refused:
        assert refused.status in (400, 401)
    else:
        assert outcome.status == 202 and len(outcome.events) == 1


entries = st.fixed_dictionaries(
    {"secret": hex_secrets},
    optional={"previous": hex_secrets, "previous_until": st.floats(min_value=0, max_value=2e9)},
)


@given(stored=st.dictionaries(st.text(min_size=1, max_size=8), entries, max_size=5),
       now=st.floats(min_value=0, max_value=2e9))  # fmt: skip
def test_live_secrets_are_every_current_one_and_the_previous_ones_still_in_their_grace(stored, now):
    raw = {name.encode(): json.dumps(entry).encode() for name, entry in stored.items()}
    found = issued.live(raw, now)
    expected = {e["secret"] for e in stored.values()}
    expected |= {e["previous"] for e in stored.values() if "previous" in e and e.get("previous_until", 0) > now}
    assert set(found) == expected and len(found) == len(set(found))


@given(raw=st.dictionaries(st.binary(max_size=8), st.binary(max_size=40), max_size=4))
def test_unreadable_entries_are_skipped_never_raised(raw):
    assert isinstance(issued.live(raw, 0.0), tuple)


@pytest.mark.parametrize("grace", [0, 60])
def test_a_rotation_keeps_the_old_secret_for_its_grace_only(rconn, grace):
    issued.remember(rconn, "sq", "sub-1", "aa" * 32)
    issued.rotated(rconn, "sq", "sub-1", "bb" * 32, grace=grace, now=1000.0)
    stored = rconn.hgetall(issued.issued_key("sq"))
    assert issued.live(stored, 1000.0 + grace / 2) == (("bb" * 32, "aa" * 32) if grace else ("bb" * 32,))
    assert issued.live(stored, 1000.0 + grace + 1) == ("bb" * 32,)
    issued.forget(rconn, "sq", "sub-1")
    assert issued.subscriptions(rconn, "sq") == set()


# -- the receiver reads the issued secrets ----------------------------------------------------------------


@pytest.mark.integration
def test_the_receiver_verifies_with_issued_secrets_and_reads_a_rotated_one_at_once(http, rconn):
    def post(order_id: str, secret: str) -> httpx.Response:
        body = notification(order_id)
        return http.post("/webhooks/sq", content=body, headers={"Squarespace-Signature": sign(secret, body)})

    issued.remember(rconn, "sq", "sub-1", "c1" * 32)
    first = post("o-1", "c1" * 32)
    assert first.status_code == 202 and first.json()["queued"] == 1
    # Rotated (the receiver holds the old list, read a moment ago): the new secret verifies at once.
    issued.rotated(rconn, "sq", "sub-1", "d2" * 32, grace=3600)
    assert post("o-2", "d2" * 32).json()["queued"] == 1
    assert post("o-3", "c1" * 32).json()["queued"] == 1  # signed before the rotation: in its grace
    stranger = post("o-4", "e3" * 32)
    assert stranger.status_code == 401 and "e3" * 32 not in stranger.text
