"""Property tests: the receiver's lean reading of a body (`handlers.signatures.object_members`) answers what
`json.loads` answers for every object, and refuses (400) every body that is not strict JSON of one object."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.errors import MalformedRequest
from handlers.signatures import MAX_NESTING, holds_constant, object_members

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ("id", "arg", "topic", "data", "é", "")

# Member names drawn mostly from the ones asked for, so they are found (and repeated) often.
names = st.sampled_from(NAMES) | st.text(max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**40), 10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(names, values, max_size=8)


def encode(value: Any, style: int) -> bytes:
    """`value` as JSON text, written the ways senders write it (compact and escaped like `wp_json_encode`,
    spaced, indented, raw UTF-8)."""
    if style == 0:
        return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()
    if style == 1:
        return json.dumps(value, ensure_ascii=False).encode()
    return json.dumps(value, indent=style - 1, ensure_ascii=style % 2 == 0).encode()


def same(left: Any, right: Any) -> bool:
    """Equal values of the same JSON types (1 and 1.0 and True differ; -0.0 and 0.0 too)."""
    if isinstance(left, float) and isinstance(right, float):
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


def reference(body: bytes) -> dict[str, Any] | None:
    """What the receiver must accept, by the standard library: UTF-8 (a leading byte order mark allowed), one
    JSON object, no NaN or Infinity, no lone surrogate escape. None: to be refused."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        text = body.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        value = json.loads(text, parse_constant=refuse)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def check(body: bytes) -> None:
    expected = reference(body)
    if expected is None:
        with pytest.raises(MalformedRequest):
            object_members(body, NAMES)
        return
    read = object_members(body, NAMES)
    wanted = {name: expected[name] for name in NAMES if name in expected}
    assert same(read.members, wanted)
    assert (read.text is None) != (read.payload is None)
    if read.text is not None:  # embedded as it stands: it must read as the object it is
        assert read.text == body
    else:
        assert same(read.payload, expected)


@PROPERTY
@given(objects, st.integers(0, 5))
def test_the_members_read_are_those_json_loads_reads(value, style):
    body = encode(value, style)
    check(body)
    assert object_members(body, NAMES).text == body  # strict JSON: never parsed whole


# Object texts built member by member: repeated names (the last one counts, as in json.loads), names
# written with escapes, odd whitespace.
def _escaped(name: str, escape_all: bool) -> str:
    if not escape_all:
        return json.dumps(name)
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else json.dumps(c)[1:-1] for c in name) + '"'


member_texts = st.builds(
    lambda name, escape_all, value, space: f"{space}{_escaped(name, escape_all)}{space}:{space}{json.dumps(value)}",
    names,
    st.booleans(),
    values,
    st.sampled_from(["", " ", "\n\t", "\r\n  "]),
)
object_texts = st.lists(member_texts, max_size=8).map(lambda members: "{" + ",".join(members) + "}")


@PROPERTY
@given(object_texts)
@example('{"id": 1, "id": 2}')
@example('{"\\u0069d": 7}')
def test_repeated_and_escaped_names_read_as_json_loads_reads_them(text):
    check(text.encode())


# Broken bodies: valid ones cut, with a character added, or with one dropped.
PIECES = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"0", b"-", b"e", b"x", b"\x00", b"\x1f", b"\xff", b"\xc3"]
PIECES += [b"NaN", b"Infinity", b"\\ud800", b"tru"]


def _mutate(body: bytes, data: st.DataObject) -> bytes:
    if not body:
        return body
    at = data.draw(st.integers(0, len(body)))
    how = data.draw(st.sampled_from(["cut", "insert", "drop", "replace"]))
    if how == "cut":
        return body[:at]
    piece = data.draw(st.sampled_from(PIECES))
    if how == "insert":
        return body[:at] + piece + body[at:]
    if how == "drop":
        return body[:at] + body[at + 1 :]
    return body[:at] + piece + body[at + 1 :]


@PROPERTY
@given(objects | values, st.integers(0, 5), st.data())
def test_a_broken_body_is_refused_and_a_still_valid_one_read_as_json_loads_reads_it(value, style, data):
    check(_mutate(encode(value, style), data))


@PROPERTY
@given(st.binary(max_size=64))
def test_any_bytes_are_read_or_refused_as_the_standard_library_decides(body):
    check(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": 1, "x": NaN}',
        b'{"id": 1, "x": [-Infinity]}',
        b'{"id": 1, "x": "\\ud800"}',
        b'{"id": 1} {}',
        b'{"id": 1,}',
        b'{"id": 1, "x": "a\x01"}',
        b'{"id": 1, "x": "\xff"}',
        b"[1]",
        b"",
        b'"id"',
    ],
)
def test_bodies_no_strict_parser_reads_as_one_object_are_refused(body):
    with pytest.raises(MalformedRequest):
        object_members(body, NAMES)


def test_constants_inside_strings_are_text_and_a_byte_order_mark_is_allowed():
    body = b'{"id": "NaN", "topic": "Infinity"}'
    assert object_members(body, NAMES).members == {"id": "NaN", "topic": "Infinity"}
    read = object_members(b'\xef\xbb\xbf{"id": 3, "x": [1]}', NAMES)
    assert read.members == {"id": 3}
    assert read.text is None and read.payload == {"id": 3, "x": [1]}  # not embeddable as it stands: re-encoded


@pytest.mark.parametrize("extra", [0, 1, 50])
def test_the_nesting_limit_holds_on_the_lean_path(extra):
    depth = MAX_NESTING - 1 + extra  # inside the body's own object
    body = b'{"id": 1, "x": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
    if extra:
        with pytest.raises(MalformedRequest, match="deeper than"):
            object_members(body, NAMES)
    else:
        assert object_members(body, NAMES).members == {"id": 1}


# Bytes made mostly of the constants' letters and pieces, so runs of N and I (past the letters the fast look
# examines one by one) and constants cut short or split are common.
constant_soup = st.lists(
    st.sampled_from([b"N", b"I", b"a", b"NaN", b"Na", b"aN", b"Infinity", b"Infinit", b"nfinity", b"x", b'"', b"\\"])
    | st.binary(max_size=4),
    max_size=60,
).map(b"".join)


@PROPERTY
@given(body=constant_soup | st.binary())
@example(body=b"NNaN")
@example(body=b"IInfinity")
@example(body=b"N" * 40 + b"NaN")
@example(body=b"I" * 40 + b"Infinity")
@example(body=b"N" * 40)
def test_holds_constant_is_the_plain_search(body):
    assert holds_constant(body) == (b"NaN" in body or b"Infinity" in body)
