"""OData v2 as Exact Online speaks it: envelopes, literals, filters, `/Date(ms)/` and error bodies.

Envelopes: a single entity and a POST answer `{"d": {...}}`; a list answers
`{"d": {"results": [...], "__next": "<absolute url with $skiptoken>"}}`; PUT and DELETE answer an
empty body. Some single-entity reads (`current/Me`) come back as a one-element `results` list.

Dates: `/Date(1700000000000)/` (optionally with a `+0100` offset suffix). Exact's milliseconds are
reported to be Dutch wall-clock time rather than UTC (Airbyte source-exact converts them as CET/CEST;
PLATFORMS.md marks the format [U]); `parse_date` therefore reads them as Europe/Amsterdam local time
and returns an aware datetime. Pass `tz=datetime.UTC` to read them as true epoch milliseconds instead.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from connectors.exactonline.errors import ExactResponseError
from gateway.payload import dumps

EXACT_TZ = ZoneInfo("Europe/Amsterdam")
_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")

Record = dict[str, Any]


# -- literals and filters ---------------------------------------------------------------------


class Guid(str):
    """A GUID value; renders as `guid'…'` in filters and keys."""

    __slots__ = ()

    def __new__(cls, value: str | uuid.UUID) -> Guid:
        try:
            canonical = str(uuid.UUID(str(value)))
        except ValueError:
            raise ValueError("not a GUID") from None
        return super().__new__(cls, canonical)


def literal(value: object) -> str:
    """An OData v2 literal: strings quoted with '' escaping, GUIDs as guid'…', ints, bools."""
    if isinstance(value, Guid | uuid.UUID):
        return f"guid'{Guid(value)}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal | float):
        return f"{value}M" if isinstance(value, Decimal) else repr(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no OData literal for {type(value).__name__}")


def eq(field: str, value: object) -> str:
    return f"{field} eq {literal(value)}"


def any_of(field: str, values: Iterable[object]) -> str:
    """`(F eq 'a' or F eq 'b')` — one request for many keys."""
    parts = [eq(field, value) for value in values]
    if not parts:
        raise ValueError("any_of needs at least one value")
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def timestamp_after(cursor: int) -> str:
    """The Sync API filter: `Timestamp gt 123L` (an Int64 literal)."""
    return f"Timestamp gt {int(cursor)}L"


def key_path(path: str, key: str | uuid.UUID) -> str:
    """`crm/Accounts(guid'…')` for one entity."""
    return f"{path}({literal(Guid(key))})"


def pad_code(code: str | int, width: int = 18) -> str:
    """Account codes are stored right-aligned in 18 characters: filter with the spaces."""
    return str(code).strip().rjust(width)


# -- envelopes ----------------------------------------------------------------------------------


def unwrap(body: object, tz: tzinfo = EXACT_TZ, *, nested: bool = True) -> Record | list[Record]:
    """The payload of an OData response: a dict for a single entity, a list for `results`. Its `/Date(ms)/`
    strings become datetimes; with `nested=False` only an entity's own fields' (what it embeds, such as a sales
    order's lines, stays as Exact sent it)."""
    if not isinstance(body, dict) or "d" not in body:
        raise ExactResponseError("Exact answered without the OData 'd' envelope")
    inner = body["d"]
    if isinstance(inner, dict) and "results" in inner:
        results = inner["results"]
        if not isinstance(results, list):
            raise ExactResponseError("Exact's 'results' is not a list")
        return [parse_dates(r, tz) for r in results]
    if isinstance(inner, dict):
        record: Record = parse_dates(inner, tz) if nested else own_dates(inner, tz)  # a dict comes back a dict
        return record
    if isinstance(inner, list):  # OData v1 style lists
        return [parse_dates(r, tz) for r in inner]
    raise ExactResponseError("Exact's 'd' envelope holds neither an entity nor results")


def unwrap_page(body: object, tz: tzinfo = EXACT_TZ) -> tuple[list[Record], str | None]:
    """One page of a list: its records and the `__next` link (None on the last page)."""
    records = unwrap(body, tz)
    if not isinstance(records, list):
        raise ExactResponseError("Exact answered a single entity where a list was expected")
    inner = body["d"]  # type: ignore[index]
    following = inner.get("__next") if isinstance(inner, dict) else None
    return records, following or None


# -- dates -----------------------------------------------------------------------------------------


def parse_date(value: str, tz: tzinfo = EXACT_TZ) -> datetime | None:
    """`/Date(ms)/` → aware datetime (wall-clock milliseconds in `tz`); None when not that shape."""
    match = _DATE.match(value)
    if match is None:
        return None
    try:
        wall = datetime(1970, 1, 1) + timedelta(milliseconds=int(match.group(1)))
    except OverflowError:
        return None  # out of any calendar: left as text, and refused where it is read
    return wall.replace(tzinfo=tz)


def format_date(moment: datetime, tz: tzinfo = EXACT_TZ) -> str:
    """The inverse of `parse_date` (used by the sandbox)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(tz).replace(tzinfo=None)
    millis = (moment - datetime(1970, 1, 1)) // timedelta(milliseconds=1)
    return f"/Date({millis})/"


def parse_dates(value: Any, tz: tzinfo = EXACT_TZ) -> Any:
    """Every `/Date(ms)/` string inside `value`, recursively, turned into a datetime."""
    if isinstance(value, str):
        parsed = parse_date(value, tz) if value.startswith("/Date(") else None
        return value if parsed is None else parsed
    if isinstance(value, dict):
        return {k: parse_dates(v, tz) for k, v in value.items()}
    if isinstance(value, list):
        return [parse_dates(v, tz) for v in value]
    return value


def own_dates(record: dict[str, Any], tz: tzinfo = EXACT_TZ) -> dict[str, Any]:
    """`parse_dates` for the record's own fields only: what it embeds (lists, entities) is left as it is."""
    return {k: _date_or_text(v, tz) if isinstance(v, str) and v.startswith("/Date(") else v for k, v in record.items()}


def _date_or_text(value: str, tz: tzinfo) -> datetime | str:
    parsed = parse_date(value, tz)
    return value if parsed is None else parsed


def iso_dates(value: Any) -> Any:
    """`value` as JSON carries it: datetimes (as `parse_dates` and the client give them) as ISO text
    with their offset, recursively. A record read either way is normalised from this one shape."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: iso_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [iso_dates(v) for v in value]
    return value


# -- request bodies and errors --------------------------------------------------------------------


def _default(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(EXACT_TZ).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Exact")


def encode(payload: object) -> bytes:
    """JSON for a POST/PUT body, compact. Decimals go as their exact digits (`12.40`, never through a
    float; a float is refused, as in every target payload), datetimes as Dutch local ISO strings."""
    return dumps(payload, default=_default).encode()


def error_text(body: object) -> tuple[str, str] | None:
    """(code, message) from Exact's `{"error": {"code": "", "message": {"lang": "", "value": "…"}}}`."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    text = message.get("value") if isinstance(message, dict) else message
    if not isinstance(text, str):
        return None
    return str(error.get("code") or ""), text


def as_timestamp(value: object) -> int:
    """A Sync API `Timestamp`, which may arrive as a JSON number or a string (optionally with `L`)."""
    if isinstance(value, bool):
        raise ExactResponseError("Timestamp is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().removesuffix("L")
        if text.lstrip("-").isdigit():
            return int(text)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ExactResponseError("Timestamp is not an integer")


__all__ = [
    "EXACT_TZ",
    "Guid",
    "Record",
    "any_of",
    "as_timestamp",
    "encode",
    "eq",
    "error_text",
    "format_date",
    "key_path",
    "literal",
    "own_dates",
    "pad_code",
    "parse_date",
    "parse_dates",
    "timestamp_after",
    "unwrap",
    "unwrap_page",
]
