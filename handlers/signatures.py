"""Small helpers every source handler shares: HMAC, constant-time comparison, header and JSON access.

Comparisons go through `hmac.compare_digest` on bytes. Text is turned into bytes with `utf8`,
which never raises: a value that is not valid Unicode (a lone surrogate from a JSON escape, or
an undecodable byte from the environment) still gets a deterministic encoding and simply fails
to match.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from pydantic_core import SchemaValidator, ValidationError, core_schema, from_json

from gateway.errors import MalformedRequest

UTF8_BOM = b"\xef\xbb\xbf"
MAX_NESTING = 200
"""Arrays and objects nest at most this deep in a body (pydantic-core's parser stops there too): a deeper
payload cannot be encoded into an envelope, nor read back by the recursive code that handles payloads."""

_STRING = re.compile(r'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)  # possessive, to the end if unterminated: linear
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def utf8(text: str) -> bytes:
    """`text` as UTF-8; undecodable bytes from the environment come back as they were."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, hashlib.sha256)  # OpenSSL's one-shot HMAC: no HMAC object per request


def equal(expected: str | bytes, given: str | bytes) -> bool:
    """Constant-time equality of two values (text compared as UTF-8 bytes)."""
    left = utf8(expected) if isinstance(expected, str) else expected
    right = utf8(given) if isinstance(given, str) else given
    return hmac.compare_digest(left, right)


def equal_ignoring_case(expected: str, given: str) -> bool:
    """Constant-time equality of two hex strings, case-insensitively."""
    return equal(expected.lower(), given.strip().lower())


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name` (names are lower-case in `Incoming`; other spellings tolerated)."""
    key = name.lower()
    value = headers.get(key)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == key), None)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


JSON = json.JSONDecoder(parse_constant=_no_constant)
"""Standard JSON: NaN and Infinity (which Python would accept) are refused."""


def decode_text(body: bytes) -> str:
    """The body as UTF-8 text, a leading byte order mark dropped; MalformedRequest if not UTF-8."""
    try:
        return body.removeprefix(UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("body is not valid UTF-8") from None


def check_nesting(text: str) -> None:
    """MalformedRequest when the JSON `text` nests arrays and objects deeper than `MAX_NESTING`.

    Counted on the text, in time linear in its length and without recursion, before a recursive parser
    sees it (the standard parser nests a C call per level, however deep the sender nests)."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_NESTING:
        raise MalformedRequest(f"body nests arrays and objects deeper than {MAX_NESTING} levels")


def _parse(body: bytes) -> tuple[Any, bool]:
    """The body's JSON value, and whether the strict parser took it (see `load_json`)."""
    try:
        return from_json(body, allow_inf_nan=False, cache_strings="keys"), True
    except ValueError:
        pass
    text = decode_text(body)
    check_nesting(text)
    try:
        value = JSON.decode(text)
    except ValueError:
        raise MalformedRequest("body is not valid JSON") from None
    except RecursionError:
        raise MalformedRequest("body is nested too deeply") from None
    return unicode_only(value), False


def unicode_only(value: Any) -> Any:
    """`value` (parsed by the standard parser), or MalformedRequest when it holds a lone surrogate
    escape ("\ud800" decodes to text that is not Unicode: nothing could store or forward it)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedRequest("body holds a lone surrogate escape (\\ud800-\\udfff), which is not Unicode") from None
    except RecursionError:
        raise MalformedRequest("body is nested too deeply") from None
    return value


def load_json(body: bytes) -> Any:
    """Parse a body of UTF-8 JSON; MalformedRequest if it is not.

    pydantic-core's parser first (half the CPU of `json` on a 3 KB order: the receiver's hot path;
    object keys cached, as they repeat from body to body: ~18 µs instead of ~26); whatever it
    refuses (a byte order mark, NaN, lone surrogates, bad UTF-8, nesting deeper than it goes) goes to
    the standard parser, which decides as before, after `check_nesting`. Where both accept, they give
    the same values.
    """
    return _parse(body)[0]


def json_object(body: bytes) -> tuple[dict[str, Any], bytes | None]:
    """`load_json_object`, and the body itself when the strict parser took it, else None.

    Such a body is standard JSON that any parser reads to the same values (UTF-8, no NaN, no lone
    surrogates, no control characters in strings): an envelope can embed it as it stands
    (`Event.payload_json`) instead of encoding the parsed object again.
    """
    payload, strict = _parse(body)
    if not isinstance(payload, dict):
        raise MalformedRequest("body is not a JSON object")
    return payload, body if strict else None


def load_json_object(body: bytes) -> dict[str, Any]:
    return json_object(body)[0]


@dataclass(frozen=True, slots=True)
class JsonObject:
    """A body that is one JSON object, read only as far as a handler needs it (`object_members`).

    Exactly one of `text` and `payload` is set: `text` is the body itself when it is strict JSON that any
    parser reads to the same values (the envelope embeds it as it stands, `Event.payload_json`); `payload`
    is the whole object parsed, when only the standard parser took the body (a byte order mark, say)."""

    members: dict[str, Any]
    """The top-level members asked for that the object has, each as `json.loads` reads it."""
    text: bytes | None
    payload: dict[str, Any] | None


_CONSTANTS = ((b"N", b"NaN"), (b"I", b"Infinity"))
_CONSTANT_TRIES = 16
"""How many occurrences of a constant's first letter `holds_constant` looks at before a plain search."""


def holds_constant(body: bytes) -> bool:
    """Whether the text `NaN` or `Infinity` is anywhere in `body` (`b"NaN" in body or b"Infinity" in body`).

    Found by the constants' first letters (a memchr each, a few in a usual body) and a look at what follows:
    ~1.4 µs for a 3 KB order, where the two substring searches take ~3.7 µs (CPython's search of a 3-byte
    needle is slow). A body with many of those letters gets the plain search after `_CONSTANT_TRIES`."""
    for letter, word in _CONSTANTS:
        at = body.find(letter)
        for _ in range(_CONSTANT_TRIES):
            if at == -1:
                break
            if body.startswith(word, at):
                return True
            at = body.find(letter, at + 1)
        else:
            if word in body:
                return True
    return False


@functools.lru_cache(maxsize=32)
def _members_validator(names: tuple[str, ...]) -> SchemaValidator:
    fields = {name: core_schema.typed_dict_field(core_schema.any_schema(), required=False) for name in names}
    return SchemaValidator(core_schema.typed_dict_schema(fields, extra_behavior="ignore"))


def object_members(body: bytes, names: tuple[str, ...]) -> JsonObject:
    """The top-level members `names` of the JSON object `body`, without building the rest of it.

    The whole body is still checked, strictly: pydantic-core's parser (jiter) reads all of it in Rust and
    refuses what `from_json(allow_inf_nan=False)` refuses (the same depth limit too), but turns only the
    named members into Python objects: no dict of the whole body to build and free (docs/benchmarks.md,
    #14). What it cannot decide alone goes the way of `json_object` (strict parser, then the standard one
    after `check_nesting`, which names what is wrong): a body holding the text `NaN` or `Infinity` anywhere
    (jiter's validator accepts those constants), and whatever it refuses. MalformedRequest when the body is
    not a JSON object.
    """
    if not holds_constant(body):
        try:
            members: dict[str, Any] = _members_validator(names).validate_json(body)
        except ValidationError:
            pass  # not an object, or not strict JSON: decided (and named) below
        else:
            return JsonObject(members, body, None)
    payload, text = json_object(body)
    members = {name: payload[name] for name in names if name in payload}
    return JsonObject(members, text, None if text is not None else payload)
