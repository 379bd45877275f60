"""Koppel's transform functions, callable from every mapping expression as `$name(...)`.

Money and quantities reach expressions as exact decimal text ("10.19"); the decimal functions take
text, integers or Decimals and return exact decimal *text*, so a value can be concatenated or
compared like any string and is converted to a `Decimal` by the target field's type. Nothing here
goes through a float. `$round` replaces JSONata's float, half-to-even `$round` with exact half-up
rounding, which is what invoices expect.

Functions that need the current run (mapping tables, resolved target ids) read it from `RUN`, a
context variable the datamapper sets around each record, so one compiled mapping can serve many
records and threads.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jsonata.utils import Utils

from gateway.model import to_decimal
from gateway.payload import decimal_text
from transforms.addresses import country_code, split_street
from transforms.errors import FunctionError
from transforms.tables import MappingTable

__all__ = ["FUNCTIONS", "RUN", "Run"]

_NULL = Utils.NULL_VALUE


@dataclass
class Run:
    """What functions may consult while one record is mapped."""

    tables: Mapping[str, MappingTable] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    placeholders: bool = False
    """Preview without resolved ids: `$id` answers "<items:SKU>" instead of failing."""


RUN: ContextVar[Run] = ContextVar("koppel_mapping_run", default=Run())  # noqa: B039 - never mutated


def _value(arg: Any) -> Any:
    """JSONata's null and undefined both become None; a singleton sequence its element."""
    if arg is _NULL:
        return None
    if isinstance(arg, list) and len(arg) == 1 and getattr(arg, "sequence", False):
        return _value(arg[0])
    return arg


def _dec(arg: Any, what: str = "value") -> Decimal | None:
    value = arg if type(arg) is str else _value(arg)
    if value is None or value == "":
        return None
    if isinstance(value, float):
        value = repr(value)
    try:
        return to_decimal(value)
    except ValueError as exc:
        raise FunctionError(f"{what} is not a decimal number ({exc})") from None


def _places(arg: Any, default: int) -> int:
    value = _value(arg)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or not 0 <= value <= 10:
        raise FunctionError("the number of decimal places must be a whole number from 0 to 10")
    return int(value)


# --- decimals ----------------------------------------------------------------------------------


def fn_decimal(value: Any = None) -> str | None:
    """$decimal(x): x as exact decimal text."""
    number = _dec(value)
    return None if number is None else decimal_text(number)


def fn_round(value: Any = None, places: Any = None) -> str | None:
    """$round(x, places=2): exact, half-up (0.125 -> 0.13); always `places` decimals."""
    number = _dec(value)
    if number is None:
        return None
    digits = _places(places, 2)
    with localcontext() as ctx:
        ctx.prec = 60
        return decimal_text(number.quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP))


def _operands(args: Sequence[Any]) -> list[Decimal]:
    out: list[Decimal] = []
    for arg in args:
        value = _value(arg)
        items = value if isinstance(value, list) else [value]
        for item in items:
            number = _dec(item)
            if number is not None:
                out.append(number)
    return out


def fn_add(*args: Any) -> str | None:
    """$add(a, b, ...) or $add(array): the exact sum; undefined operands are skipped."""
    numbers = _operands(args)
    if not numbers:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        return decimal_text(sum(numbers, Decimal(0)))


def fn_sub(a: Any = None, b: Any = None) -> str | None:
    """$sub(a, b): a - b (undefined b counts as 0)."""
    left, right = _dec(a), _dec(b)
    if left is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        return decimal_text(left - (right or 0))


def fn_mul(*args: Any) -> str | None:
    """$mul(a, b, ...): the exact product; undefined if any operand is."""
    numbers = [_dec(a) for a in args]
    if not numbers or any(n is None for n in numbers):
        return None
    result = Decimal(1)
    with localcontext() as ctx:
        ctx.prec = 60
        for number in numbers:
            result *= number  # type: ignore[operator]
        return decimal_text(result)


def fn_div(a: Any = None, b: Any = None, places: Any = None) -> str | None:
    """$div(a, b, places=10): a / b rounded half-up; dividing by zero is an error."""
    left, right = _dec(a), _dec(b)
    if left is None or right is None:
        return None
    if not right:
        raise FunctionError("division by zero")
    digits = _places(places, 10)
    with localcontext() as ctx:
        ctx.prec = 60
        quotient = (left / right).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP)
        return decimal_text(quotient.normalize() if places is None else quotient)


def fn_neg(value: Any = None) -> str | None:
    """$neg(x): -x."""
    number = _dec(value)
    return None if number is None else decimal_text(-number)


# --- text --------------------------------------------------------------------------------------


def _text(arg: Any) -> str | None:
    if type(arg) is str:
        return arg
    value = _value(arg)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal):
        return decimal_text(Decimal(value))
    if isinstance(value, float):
        return decimal_text(Decimal(repr(value)))
    raise FunctionError(f"expected text, got {'a list' if isinstance(value, list) else 'an object'}")


def fn_coalesce(*args: Any) -> Any:
    """$coalesce(a, b, ...): the first argument that is neither undefined, null nor empty text."""
    for arg in args:
        value = _value(arg)
        if value is not None and value != "":
            return value
    return None


def fn_upper(value: Any = None) -> str | None:
    text = _text(value)
    return None if text is None else text.upper()


def fn_lower(value: Any = None) -> str | None:
    text = _text(value)
    return None if text is None else text.lower()


def fn_left(value: Any = None, length: Any = None) -> str | None:
    """$left(text, n): at most the first n characters (ERP fields have a maximum length)."""
    text = _text(value)
    count = _value(length)
    if isinstance(count, bool) or not isinstance(count, int | float) or count < 0 or count != int(count):
        raise FunctionError("$left needs a length that is a whole number of 0 or more")
    return None if text is None else text[: int(count)]


def fn_join_nonempty(*args: Any) -> str | None:
    """$fullName(a, b, ...) / $joinNonEmpty(sep, a, b, ...): parts that are not empty, joined."""
    parts = [t for a in args if (t := _text(a))]
    return " ".join(parts) or None


def fn_join_with(separator: Any = None, *args: Any) -> str | None:
    sep = _text(separator) or ""
    parts = []
    for arg in args:
        value = _value(arg)
        for item in value if isinstance(value, list) else [value]:
            if text := _text(item):
                parts.append(text)
    return sep.join(parts) or None


def fn_vat_number(value: Any = None) -> str | None:
    """$vatNumber(x): upper case, without spaces, dots and dashes ("nl 8547.03.145.B01" -> NL854703145B01)."""
    text = _text(value)
    if text is None:
        return None
    cleaned = "".join(c for c in text.upper() if c.isalnum())
    return cleaned or None


# --- addresses ---------------------------------------------------------------------------------


def fn_split_street(value: Any = None) -> dict[str, str] | None:
    """$splitStreet(line): {"street", "number", "addition"} (absent parts left out)."""
    text = _text(value)
    if text is None:
        return None
    parts = split_street(text)
    return {k: v for k, v in parts._asdict().items() if v is not None}


def fn_street(value: Any = None) -> str | None:
    text = _text(value)
    return None if text is None else split_street(text).street


def fn_house_number(value: Any = None) -> str | None:
    text = _text(value)
    return None if text is None else split_street(text).number


def fn_house_number_addition(value: Any = None) -> str | None:
    text = _text(value)
    return None if text is None else split_street(text).addition


def fn_country(value: Any = None, fallback: Any = None) -> str | None:
    """$country(x): ISO alpha-2 from a code or a country name ("Nederland" -> NL, "België" -> BE)."""
    text = _text(value)
    if text is None or not text.strip():
        return None
    code = country_code(text)
    if code is None:
        if fallback is not None:
            return _text(fallback)
        raise FunctionError(f"{text[:60]!r} is not a country Koppel knows (give an ISO code or an English name)")
    return code


# --- dates -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Zone:
    zones: dict[str, ZoneInfo] = field(default_factory=dict)

    def get(self, name: str) -> ZoneInfo:
        zone = self.zones.get(name)
        if zone is None:
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise FunctionError(f"{name[:60]!r} is not a time zone (e.g. Europe/Amsterdam)") from None
            self.zones[name] = zone
        return zone


_ZONES = _Zone()


def fn_format_date(value: Any = None, pattern: Any = None, zone: Any = None) -> str | None:
    """$formatDate(x, pattern="%Y-%m-%d", zone): x (ISO date or timestamp) in strftime `pattern`;
    a timestamp is first converted to `zone` (e.g. "Europe/Amsterdam"), else kept in UTC."""
    text = _text(value)
    if text is None or not text.strip():
        return None
    fmt = _text(pattern) or "%Y-%m-%d"
    try:
        moment: date | datetime = (
            date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text.replace("z", "Z"))
        )
    except ValueError:
        raise FunctionError(f"{text[:40]!r} is not an ISO 8601 date or timestamp") from None
    zone_name = _text(zone)
    if isinstance(moment, datetime) and zone_name:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_ZONES.get("UTC"))
        moment = moment.astimezone(_ZONES.get(zone_name))
    if fmt == "%Y-%m-%d" and moment.year >= 1000:  # the commonest pattern, without strftime (same text)
        return (moment.date() if isinstance(moment, datetime) else moment).isoformat()
    try:
        return moment.strftime(fmt)
    except ValueError:
        raise FunctionError("the date pattern is not a valid strftime pattern") from None


# --- products ----------------------------------------------------------------------------------

_BLOCK_TAGS = re.compile(r"<\s*(br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def fn_plain_text(value: Any = None) -> str | None:
    """$plainText(html): the text of an HTML fragment (a shop's description): tags removed, entities
    decoded, line breaks kept where blocks end, runs of spaces collapsed."""
    text = _text(value)
    if text is None:
        return None
    text = _BLOCK_TAGS.sub("\n", text)
    text = html.unescape(_TAGS.sub("", text)).replace("\xa0", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    joined = "\n".join(line for line in lines if line)
    return joined or None


def fn_variant_title(name: Any = None, options: Any = None, length: Any = None) -> str | None:
    """$variantTitle(name, options, n): "Hoodie \u2013 Blue, L" (an en dash) in at most n characters: the option values
    (an object's values, or a list) after the name; the name is shortened (ending in "…") to keep the
    options whole, unless the options alone do not fit."""
    title = _text(name) or ""
    raw = _value(options)
    values = list(raw.values()) if isinstance(raw, Mapping) else raw if isinstance(raw, list) else [raw]
    suffix = ", ".join(t for v in values if (t := _text(v)))
    count = _value(length)
    if isinstance(count, bool) or not isinstance(count, int | float) or count < 1 or count != int(count):
        raise FunctionError("$variantTitle needs a length that is a whole number of 1 or more")
    limit = int(count)
    if not suffix:
        return title[:limit] or None
    if not title:
        return suffix[:limit]
    full = f"{title} \u2013 {suffix}"
    if len(full) <= limit:
        return full
    room = limit - len(suffix) - 3
    if room >= 2:
        return f"{title[: room - 1].rstrip()}\u2026 \u2013 {suffix}"
    return full[:limit]


def fn_mapped(table: Any = None, wanted: Any = None, values: Any = None) -> Any:
    """$mapped(table, target, object): the value in `object` of the first key that the mapping table
    maps to `target` ("Material" → "FreeTextField_01" in `features`: `$mapped('features',
    'FreeTextField_01', features)` is the product's material). Undefined when none is mapped."""
    name, target = _text(table), _text(wanted)
    if not name or target is None:
        raise FunctionError("$mapped needs the name of a mapping table and the target value to look for")
    found = RUN.get().tables.get(name)
    source = _value(values)
    if found is None or not isinstance(source, Mapping):
        return None
    for key, value in source.items():
        hit, mapped = found.find(str(key))
        if hit and _text(mapped) == target and _value(value) not in (None, ""):
            return _value(value)
    return None


def _price_pair(excl: Any, incl: Any, rate: Any) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    return _dec(excl, "price excl. tax"), _dec(incl, "price incl. tax"), _dec(rate, "tax rate")


def fn_price_excl(excl: Any = None, incl: Any = None, rate: Any = None) -> str | None:
    """$priceExcl(price_excl, price_incl, rate): the price without tax: as given, else the price with
    tax divided by 1 + rate/100 (rounded to 4 places); an error when that needs a rate none gave."""
    net, gross, percent = _price_pair(excl, incl, rate)
    if net is not None or gross is None:
        return None if net is None else decimal_text(net)
    if percent is None:
        raise FunctionError("the price includes tax and no tax rate is known to take it off (add a tax_rates table)")
    return decimal_text((gross * 100 / (100 + percent)).quantize(Decimal("0.0001")).normalize())


def fn_price_incl(excl: Any = None, incl: Any = None, rate: Any = None) -> str | None:
    """$priceIncl(price_excl, price_incl, rate): the price with tax: as given, else excl. * (1 + rate/100)."""
    net, gross, percent = _price_pair(excl, incl, rate)
    if gross is not None or net is None:
        return None if gross is None else decimal_text(gross)
    if percent is None:
        raise FunctionError("the price excludes tax and no tax rate is known to add it (add a tax_rates table)")
    return decimal_text((net * (100 + percent) / 100).quantize(Decimal("0.0001")).normalize())


# --- lookups -----------------------------------------------------------------------------------


def fn_table(name: Any = None, key: Any = None, *fallback: Any) -> Any:
    """$table(name, key, fallback?): the mapping table's value for key (or the first of a list of
    keys that it holds); else the table's default; else `fallback` when given; else an error."""
    table_name = name if type(name) is str else _text(name)
    if not table_name:
        raise FunctionError("$table needs the name of a mapping table as its first argument")
    raw = key if type(key) is str else _value(key)
    if type(raw) is str:
        candidates = [raw] if raw else []
    else:
        keys = [_text(k) for k in (raw if isinstance(raw, list) else [raw])]
        candidates = [k for k in keys if k is not None and k != ""]
    return table_lookup(table_name, candidates, fallback)


def table_lookup(table_name: str, candidates: list[str], fallback: tuple[Any, ...]) -> Any:
    """`$table` once its name is known and its keys are non-empty text (the fast path calls this)."""
    table = RUN.get().tables.get(table_name)
    if table is not None:
        for candidate in candidates:
            found, value = table.find(candidate)
            if found:
                return value
        if table.has_default:
            return table.default
    if fallback:
        return _value(fallback[0])
    shown = " or ".join(repr(k[:60]) for k in candidates) or "an empty key"
    if table is None:
        raise FunctionError(f"mapping table {table_name!r} is not configured, so it has no entry for {shown}")
    raise FunctionError(f"mapping table {table_name!r} has no entry for {shown} and no default")


def fn_id(kind: Any = None, key: Any = None) -> Any:
    """$id(kind) / $id(kind, key): a target id resolved at run time (context["account"],
    context["items"]["SKU-1"]). Preview without a context shows "<account>", "<items:SKU-1>"."""
    name = _text(kind)
    if not name:
        raise FunctionError("$id needs the kind of id as its first argument, e.g. $id('items', sku)")
    run = RUN.get()
    found = run.context.get(name)
    wanted = key if type(key) is str else _value(key)
    lookup = None
    if wanted is not None:
        lookup = _text(wanted) or ""
        if isinstance(found, Mapping):
            value = found.get(lookup)
            if value is None:
                folded = lookup.casefold()
                value = next((v for k, v in found.items() if str(k).casefold() == folded), None)
            found = value
        else:
            found = None
    if found is not None and found != "":
        return found
    label = f"{name}:{lookup}" if lookup is not None else name
    if run.placeholders:
        return f"<{label}>"
    raise FunctionError(f"no {label} id was resolved for this record (the worker passes it in the context)")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "decimal": fn_decimal,
    "round": fn_round,
    "add": fn_add,
    "sub": fn_sub,
    "mul": fn_mul,
    "div": fn_div,
    "neg": fn_neg,
    "coalesce": fn_coalesce,
    "upper": fn_upper,
    "lower": fn_lower,
    "left": fn_left,
    "fullName": fn_join_nonempty,
    "joinNonEmpty": fn_join_with,
    "vatNumber": fn_vat_number,
    "splitStreet": fn_split_street,
    "street": fn_street,
    "houseNumber": fn_house_number,
    "houseNumberAddition": fn_house_number_addition,
    "country": fn_country,
    "formatDate": fn_format_date,
    "table": fn_table,
    "id": fn_id,
    "plainText": fn_plain_text,
    "variantTitle": fn_variant_title,
    "mapped": fn_mapped,
    "priceExcl": fn_price_excl,
    "priceIncl": fn_price_incl,
}
"""Name (without the $) -> implementation. Documented in docs/datamapper.md."""
