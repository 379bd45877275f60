"""Winstore's bodies: the hardened XML reader, JSON, records however wrapped, and the XML order document."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.winstore.wire import MalformedBody, field, order_xml, parse_json, parse_xml, records

ARRAY = b"""<?xml version="1.0" encoding="utf-8"?>
<ArrayOfArticle xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.datacontract.org/2004/07/X">
  <Article><ArtKey>1001</ArtKey><ArtNr>0412</ArtNr><Gtin i:nil="true"/>
    <Description>Jas &amp; sjaal</Description></Article>
</ArrayOfArticle>"""


def test_a_dotnet_array_of_one_is_a_list_and_nil_is_none():
    data = parse_xml(ARRAY)
    assert data == [{"ArtKey": "1001", "ArtNr": "0412", "Gtin": None, "Description": "Jas & sjaal"}]
    assert records(data)[0]["ArtNr"] == "0412"  # zero-padded numbers stay text (the PHP client's 1.0.3 fix)


def test_repeated_elements_become_lists_and_prefixes_are_dropped():
    data = parse_xml(b"<r><a:x xmlns:a='u'>1</a:x><a:x xmlns:a='u'>2</a:x><y>3</y></r>")
    assert data == {"x": ["1", "2"], "y": "3"}


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><r>&lol2;</r>',
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        b'<!DOCTYPE r SYSTEM "http://127.0.0.1:1/evil.dtd"><r/>',
        b"<r>&undefined;</r>",
        b"<r><unclosed></r>",
        b"not xml at all",
    ],
)
def test_dtds_entities_and_malformed_xml_are_refused(body):
    with pytest.raises(MalformedBody):
        parse_xml(body)


def test_nesting_is_bounded():
    with pytest.raises(MalformedBody, match="deeper"):
        parse_xml(b"<a>" * 100 + b"</a>" * 100)


def test_json_keeps_decimals_exact_and_tolerates_a_bom():
    assert parse_json(b'\xef\xbb\xbf[{"SalesPrice": 89.95}]') == [{"SalesPrice": Decimal("89.95")}]
    assert parse_json(b"  ") is None
    with pytest.raises(MalformedBody):
        parse_json(b"{nope")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([{"a": 1}], [{"a": 1}]),
        ({"Articles": [{"a": 1}, {"a": 2}]}, [{"a": 1}, {"a": 2}]),
        ({"Article": {"a": 1}}, [{"a": 1}]),
        ({"ArtKey": "1", "ArtNr": "x"}, [{"ArtKey": "1", "ArtNr": "x"}]),
        ({"Articles": None}, []),
        (None, []),
        ("text", []),
    ],
)
def test_records_are_found_however_wrapped(data, expected):
    assert records(data) == expected


def test_fields_are_read_by_any_spelling_case_and_underscores_ignored():
    record = {"art_key": "7", "ARTNR": "", "ArtikelNr": "A-1"}
    assert field(record, "ArtKey") == "7"
    assert field(record, "ArtNr", "ArtikelNr") == "A-1"  # an empty value is no value
    assert field(record, "Missing") is None


def test_the_order_document_is_written_in_order_with_positions():
    payload = {
        "ordernr": "W-1001", "orderdate": "2026-12-01 10:00:00", "customerid": 999999, "email": "a&b@example.com",
        "branch": 1, "channel": None, "total": Decimal("12.10"),
        "invoice_add": {"fname": "Ann", "street": "Kerkstraat <1>"},
        "positions": [{"product_id": "1001", "amount": 2, "single_price": 6.05, "type": "S"}],
    }  # fmt: skip
    xml = order_xml(payload).decode()
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?><order><ordernr>W-1001</ordernr>')
    assert "<channel>" not in xml  # None: left out
    assert "<email>a&amp;b@example.com</email>" in xml and "Kerkstraat &lt;1&gt;" in xml
    position = "<position><product_id>1001</product_id><amount>2</amount><single_price>6.05</single_price>"
    assert "<positions>" + position in xml


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"bad name": "x"}, "not a name"),
        ({"lines": [{"a": 1}]}, "only positions"),
        ({"positions": ["x"]}, "table of fields"),
        ({"invoice_add": {"fname": "An\x00n"}}, r"order\.invoice_add\.fname: holds U\+0000"),
    ],
)
def test_an_order_that_cannot_be_xml_is_refused_naming_why(payload, error):
    with pytest.raises(ValueError, match=error):
        order_xml(payload)


# -- properties ------------------------------------------------------------------------------------------------

XML_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff"), max_size=40
).filter(lambda t: all(ord(c) >= 0x20 or c in "\t\n\r" for c in t))
NAMES = st.from_regex(r"[A-WYZa-wyz_][A-Za-z0-9_]{0,12}", fullmatch=True)
SCALAR = st.one_of(XML_TEXT, st.integers(-(10**9), 10**9), st.decimals(allow_nan=False, allow_infinity=False, places=2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(NAMES.filter(lambda n: n != "positions"), SCALAR, min_size=1, max_size=6),
    st.lists(st.dictionaries(NAMES, SCALAR, min_size=1, max_size=4), min_size=2, max_size=4),
)
def test_an_order_document_reads_back_as_written(fields, positions):
    read = parse_xml(order_xml({**fields, "positions": positions}))
    for name, value in fields.items():
        expected = format(value, "f") if isinstance(value, Decimal) else str(value).strip() or None
        assert read[name] == expected
    assert len(read["positions"]["position"]) == len(positions)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_are_refused_cleanly(body):
    for parse in (parse_xml, parse_json):
        with contextlib.suppress(MalformedBody):
            parse(body)


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=12))  # fmt: skip
def test_records_of_any_json_are_a_list_of_dicts(data):
    found = records(parse_json(json.dumps(data).encode()))
    assert isinstance(found, list) and all(isinstance(r, dict) for r in found)
