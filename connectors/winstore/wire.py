"""Winstore's bodies: XML or JSON read into plain Python, records found in them, and the XML order written.

Reading XML. defusedxml is not among Koppel's dependencies, so XML is read with the standard library's
expat parser directly, hardened by hand: a document with a DOCTYPE (and so any entity declaration,
internal or external) is refused before anything in it is expanded, entity references other than the
five predefined ones are errors (expat knows no others without a DTD), and external entities are never
fetched (no handler for them is set). What is left — elements, attributes, text — is read into:

    an element with no child elements     its text ("" → None; `xsi:nil="true"` → None)
    an element with child elements        {tag: value}; a tag that repeats becomes a list of its values
    an "ArrayOf…" element (.NET's lists)  a list of its children's values, also with one child or none

Namespace prefixes are dropped from tags (`<a:ArtKey>` is `ArtKey`); attributes other than `nil` are
ignored (Winstore's answers carry their data in elements, as far as the public client shows).

`records(data)` finds the list of records in an answer, however it is wrapped: a list; a dict holding one
list (or one record) under a single key (`{"Articles": [...]}`, `<ArrayOfArticle><Article>`); a lone
record. `field(record, *names)` reads a field by any of its spellings, case and underscores ignored:
Winstore's field names are not documented publicly (see connectors/winstore/connector.py).

Writing XML: `order_xml` writes the `<order>` document of `PostOrderWithStatusCode` from a mapping's
payload (nested dicts are elements; the list under `positions` is one `<position>` per entry);
`document_xml` any other document the same way (the `<stock>` level).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from xml.parsers import expat
from xml.sax.saxutils import escape

__all__ = ["MalformedBody", "document_xml", "field", "order_xml", "parse_json", "parse_xml", "records"]


class MalformedBody(ValueError):
    """A body that is not the XML or JSON it claims to be, or XML this reader refuses (a DTD, entities)."""


_PREFIX = re.compile(r"^[^:]+:")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_LIST_CHILD = {"positions": "position"}
"""A list in the order payload → the element each entry becomes."""
_MAX_DEPTH = 64
_CARRIAGE_RETURN = {"\r": "&#13;"}
"""A parser turns a literal CR into LF (XML's line-end rule); as a character reference it arrives as sent."""


class _Element:
    __slots__ = ("children", "nil", "tag", "text")

    def __init__(self, tag: str, nil: bool) -> None:
        self.tag = tag
        self.nil = nil
        self.children: list[_Element] = []
        self.text: list[str] = []


def _refuse_doctype(*_args: Any) -> None:
    raise MalformedBody("XML with a DOCTYPE is refused (no DTDs or entity declarations)")


def _refuse_entity(*_args: Any) -> None:
    raise MalformedBody("XML with entity declarations is refused")


def _refuse_external(*_args: Any) -> int:
    raise MalformedBody("XML referring to external entities is refused")


def parse_xml(content: bytes) -> Any:
    """The XML document as plain Python (see the module docstring); None for an empty body."""
    if not content.strip():
        return None
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external
    stack: list[_Element] = []
    root: list[_Element] = []

    def start(tag: str, attributes: dict[str, str]) -> None:
        if len(stack) >= _MAX_DEPTH:
            raise MalformedBody(f"XML nested deeper than {_MAX_DEPTH} elements")
        nil = any(_PREFIX.sub("", k) == "nil" and v.strip().lower() == "true" for k, v in attributes.items())
        element = _Element(_PREFIX.sub("", tag), nil)
        (stack[-1].children if stack else root).append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(content, True)
    except expat.ExpatError as exc:
        raise MalformedBody(f"not well-formed XML ({expat.ErrorString(exc.code)}, line {exc.lineno})") from None
    except RecursionError:  # pragma: no cover - bounded by _MAX_DEPTH
        raise MalformedBody("XML nested too deep") from None
    if not root:
        raise MalformedBody("XML without a root element")
    return _value(root[0])


def _value(element: _Element) -> Any:
    if element.nil:
        return None
    if element.tag.startswith("ArrayOf"):
        return [_value(child) for child in element.children]
    if not element.children:
        text = "".join(element.text).strip()
        return text or None
    out: dict[str, Any] = {}
    repeated = _repeated(element)
    for child in element.children:
        if child.tag in repeated:
            out.setdefault(child.tag, []).append(_value(child))
        else:
            out[child.tag] = _value(child)
    return out


def _repeated(element: _Element) -> set[str]:
    """Tags that occur more than once among the element's children (their values are lists)."""
    seen: set[str] = set()
    twice: set[str] = set()
    for child in element.children:
        (twice if child.tag in seen else seen).add(child.tag)
    return twice


def parse_json(content: bytes) -> Any:
    """The JSON body (a stray UTF-8 BOM tolerated); None for an empty body."""
    text = content.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        return None
    try:
        return json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise MalformedBody("not valid JSON") from None


def records(data: Any) -> list[dict[str, Any]]:
    """The records in an answer, however wrapped (see the module docstring); [] for None."""
    for _ in range(3):
        if data is None:
            return []
        if isinstance(data, list):
            return [item for item in data if isinstance(item, dict)]
        if isinstance(data, dict) and len(data) == 1:
            (inner,) = data.values()
            if isinstance(inner, list):
                return [item for item in inner if isinstance(item, dict)]
            if isinstance(inner, dict) and all(isinstance(v, dict | list) for v in inner.values()) and inner:
                data = inner
                continue
            if isinstance(inner, dict):
                return [inner]
            if inner is None:
                return []
        if isinstance(data, dict):
            return [data]
        return []
    return [data] if isinstance(data, dict) else []


def _folded(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def field(record: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` the record holds a non-empty value for (case, `_` and `-` ignored); else None."""
    folded = {_folded(str(key)): value for key, value in record.items()}
    for name in names:
        value = folded.get(_folded(name))
        if value is not None and value != "":
            return value
    return None


def order_xml(payload: Mapping[str, Any]) -> bytes:
    """The `<order>` document from a mapping's payload; ValueError naming a key that cannot be an element."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', "<order>"]
    _write(parts, payload.items(), "order")
    parts.append("</order>")
    return "".join(parts).encode("utf-8")


def document_xml(root: str, payload: Mapping[str, Any]) -> bytes:
    """An XML document `<root>` written from a payload as `order_xml` writes the order (e.g. `<stock>`)."""
    if not _NAME.match(root):
        raise ValueError(f"{root}: not a name an XML element can have")
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', f"<{root}>"]
    _write(parts, payload.items(), root)
    parts.append(f"</{root}>")
    return "".join(parts).encode("utf-8")


def _write(parts: list[str], items: Iterable[tuple[str, Any]], path: str) -> None:
    for key, value in items:
        if not _NAME.match(key) or key.lower().startswith("xml"):
            raise ValueError(f"{path}.{key}: not a name an XML element can have")
        if value is None:
            continue
        if isinstance(value, Mapping):
            parts.append(f"<{key}>")
            _write(parts, value.items(), f"{path}.{key}")
            parts.append(f"</{key}>")
        elif isinstance(value, list | tuple):
            child = _LIST_CHILD.get(key)
            if child is None:
                raise ValueError(f"{path}.{key}: a list, and only positions may be one")
            parts.append(f"<{key}>")
            for index, entry in enumerate(value):
                if not isinstance(entry, Mapping):
                    raise ValueError(f"{path}.{key}[{index}]: each {child} must be a table of fields")
                parts.append(f"<{child}>")
                _write(parts, entry.items(), f"{path}.{key}[{index}]")
                parts.append(f"</{child}>")
            parts.append(f"</{key}>")
        else:
            text = _text(value)
            bad = next((c for c in text if _illegal(c)), None)
            if bad is not None:  # the value itself is not echoed: it may be a customer's name or address
                raise ValueError(f"{path}.{key}: holds U+{ord(bad):04X}, a character XML cannot carry")
            parts.append(f"<{key}>{escape(text, _CARRIAGE_RETURN)}</{key}>")


def _illegal(char: str) -> bool:
    """A character XML 1.0 cannot carry at all: refused rather than sent in a document Winstore rejects."""
    code = ord(char)
    return (code < 0x20 and char not in "\t\n\r") or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)
