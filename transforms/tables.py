"""Mapping tables: code lists translated between source and target, kept in the config file.

    [integrations.tables.payment_methods]
    default = "BANK"                  # optional: the value for any key not listed
    case_sensitive = false            # optional (default false): "iDEAL" finds "ideal"
    [integrations.tables.payment_methods.entries]
    ideal = "IDEAL"
    bacs = "BANK"

Entries live under `entries` so that any source code — even one spelled "default" — can be a key.
Values are text, whole numbers, booleans or tables (for attributes and features that carry more
than one target value); decimals are written as text ("0.21") so they stay exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONVENTIONAL_TABLES", "MappingTable", "parse_tables"]

CONVENTIONAL_TABLES = {
    "payment_methods": "source payment method -> target payment method / condition",
    "payment_conditions": "source payment method or terms -> target payment condition (terms) code",
    "shipping_methods": "source shipping method -> target shipping method code",
    "vat_codes": "country, 'country:rate' or rate -> target VAT / tax code",
    "revenue_accounts": "country -> revenue (G/L) account",
    "cost_centres": "key of your choice (e.g. shop, country) -> cost centre",
    "cost_units": "key of your choice -> cost unit",
    "customer_classifications": "source group / role -> target customer classification",
    "tax_areas": "billing country -> Business Central tax area / VAT business posting group code",
    "payment_terms": "billing country -> Business Central payment terms code",
    "customer_payment_methods": "billing country -> Business Central payment method code",
    "shipment_methods": "billing country -> Business Central shipment method code",
    "attributes": "source attribute name -> target attribute (variants: size, colour)",
    "features": "source feature name -> target feature (extra information)",
}
"""Tables the default mappings consult and the documentation describes; any other name may be used."""

_MISSING = object()
_OPTIONS = {"default", "entries", "case_sensitive", "description"}


@dataclass(frozen=True)
class MappingTable:
    name: str
    entries: Mapping[str, Any]
    default: Any = _MISSING
    case_sensitive: bool = False
    _folded: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _found: dict[str, tuple[bool, Any]] = field(default_factory=dict, repr=False, compare=False)
    """find() answers by key as written (case-insensitive tables), so each spelling is folded once."""

    @classmethod
    def build(
        cls, name: str, entries: Mapping[str, Any], default: Any = _MISSING, case_sensitive: bool = False
    ) -> MappingTable:
        folded = {} if case_sensitive else {k.strip().casefold(): v for k, v in entries.items()}
        return cls(name, dict(entries), default, case_sensitive, folded)

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING

    def find(self, key: str) -> tuple[bool, Any]:
        if self.case_sensitive:
            if key in self.entries:
                return True, self.entries[key]
            return False, None
        found = self._found.get(key)
        if found is None:
            folded = key.strip().casefold()
            found = (True, self._folded[folded]) if folded in self._folded else (False, None)
            if len(self._found) < 4096:  # keys as written: a few hundred spellings at most
                self._found[key] = found
        return found


def _check_value(value: Any) -> str | None:
    if isinstance(value, float):
        return 'decimal values must be written as text ("0.21") so they stay exact'
    if isinstance(value, str | int | bool):
        return None
    if isinstance(value, Mapping):
        for item in value.values():
            if (reason := _check_value(item)) is not None:
                return reason
        return None
    if isinstance(value, list):
        for item in value:
            if (reason := _check_value(item)) is not None:
                return reason
        return None
    return f"values must be text, whole numbers, booleans or tables, not {type(value).__name__}"


def parse_tables(raw: object) -> tuple[dict[str, MappingTable], list[tuple[str, str]]]:
    """Validate the `tables` section; return the tables and (path, reason) problems."""
    problems: list[tuple[str, str]] = []
    tables: dict[str, MappingTable] = {}
    if not isinstance(raw, Mapping):
        return tables, [("", "must be a table of mapping tables")]
    for name, spec in raw.items():
        if not isinstance(spec, Mapping):
            problems.append((name, "a mapping table is a TOML table with `entries` and optionally `default`"))
            continue
        unknown = sorted(set(spec) - _OPTIONS)
        if unknown:
            problems.append(
                (
                    f"{name}.{unknown[0]}",
                    f"unknown key; put entries under [integrations.tables.{name}.entries] "
                    "(allowed here: default, entries, case_sensitive, description)",
                )
            )
            continue
        entries = spec.get("entries", {})
        if not isinstance(entries, Mapping):
            problems.append((f"{name}.entries", "must be a table of key = value entries"))
            continue
        bad = False
        for key, value in entries.items():
            if (reason := _check_value(value)) is not None:
                problems.append((f"{name}.entries.{key}", reason))
                bad = True
        default = spec.get("default", _MISSING)
        if default is not _MISSING and (reason := _check_value(default)) is not None:
            problems.append((f"{name}.default", reason))
            bad = True
        case_sensitive = spec.get("case_sensitive", False)
        if not isinstance(case_sensitive, bool):
            problems.append((f"{name}.case_sensitive", "must be true or false"))
            bad = True
        if not case_sensitive:
            seen: dict[str, str] = {}
            for key in entries:
                folded = key.strip().casefold()
                if folded in seen:
                    problems.append(
                        (
                            f"{name}.entries.{key}",
                            f"same key as {seen[folded]!r} when case is ignored (case_sensitive = false)",
                        )
                    )
                    bad = True
                seen[folded] = key
        if not bad:
            tables[name] = MappingTable.build(name, entries, default, case_sensitive)
    return tables, problems
