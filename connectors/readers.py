"""Readers for the values systems send as text: ISO 8601 date-times and decimal numbers.

Both return None for what they cannot read and never raise; a caller that must fail turns the None into
its own error naming the record and the field. Caller-specific leniency (stripping, spellings such as a
lowercase "z", over-long fractions) stays with the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

__all__ = ["decimal_of", "iso_time"]


def iso_time(text: str, zone: tzinfo | str = UTC) -> datetime | None:
    """An aware datetime from ISO 8601 `text`; None when unreadable.

    A trailing "Z" means UTC; a time without an offset is wall-clock time in `zone` (a tzinfo or an IANA
    name, UTC unless given). The text is read as is: callers strip or rewrite it first when they must.
    """
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=ZoneInfo(zone) if isinstance(zone, str) else zone)


def decimal_of(value: object) -> Decimal | None:
    """A finite Decimal from a JSON number or from text with a decimal point or a decimal comma; None when
    unreadable (booleans, NaN, infinities, anything else that is not a number).

    A float goes through its shortest repr (0.1 → Decimal("0.1"), not the binary expansion).
    """
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip().replace(",", "."))
    except ArithmeticError:  # InvalidOperation, and overflow of an absurd exponent
        return None
    return number if number.is_finite() else None
