"""The shape of a mapping: target field <- expression, nested objects and lists, and how a user's
override is laid over the default.

A mapping is a TOML table of target fields. Each value is one of:

    Field = "expression"                           the field's value (JSONata)
    Field = { _expr = "...", _type = "decimal", _required = true }
    Field = false                                  (override only) do not send this field
    Object = { Sub = "...", _when = "condition" }  a nested object, sent only when _when holds
    Lines = { _each = "lines", Sub = "..." }       a list: one object per element of `_each`
    Lines = { _concat = true, products = { _each = "lines", ... }, shipping = { _each = ... } }
                                                   one list made of named parts, in order

Keys starting with "_" are options; every other key is a target field. `_type` converts the
result: any (as produced, floats become exact decimals), string, decimal, decimal_text (exact
decimal as text, as WooCommerce wants money), integer, boolean. Overriding a field's expression
keeps the default's `_type` and `_required`: those belong to the target field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["TYPES", "FieldSpec", "GroupSpec", "Problems", "flatten", "merge", "parse_group", "render_toml"]

TYPES = ("any", "string", "decimal", "decimal_text", "integer", "boolean")
_FIELD_OPTIONS = {"_expr", "_type", "_required"}
_GROUP_OPTIONS = {"_each", "_when", "_required", "_concat"}
Problems = list[tuple[str, str]]


@dataclass(frozen=True)
class FieldSpec:
    expr: str
    type: str = "any"
    required: bool = False


@dataclass(frozen=True)
class GroupSpec:
    """A nested object (each is None) or a list of objects (each = expression giving the elements)."""

    fields: dict[str, FieldSpec | GroupSpec] = field(default_factory=dict)
    each: str | None = None
    when: str | None = None
    required: bool = False
    concat: bool = False
    """The list is the concatenation of the child lists (each child has `_each`)."""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _parse_value(value: Any, path: str, problems: Problems) -> FieldSpec | GroupSpec | None:
    if isinstance(value, str):
        return FieldSpec(value)
    if isinstance(value, Mapping):
        if "_expr" in value:
            return _parse_field(value, path, problems)
        return parse_group(value, path, problems)
    problems.append((path, "must be an expression in quotes, a table of fields, or false to leave the field out"))
    return None


def _parse_field(value: Mapping[str, Any], path: str, problems: Problems) -> FieldSpec | None:
    unknown = sorted(set(value) - _FIELD_OPTIONS)
    if unknown:
        problems.append((_join(path, unknown[0]), "a field with _expr takes only _expr, _type and _required"))
        return None
    expr = value.get("_expr")
    kind = value.get("_type", "any")
    required = value.get("_required", False)
    if not isinstance(expr, str):
        problems.append((_join(path, "_expr"), "must be an expression in quotes"))
        return None
    if kind not in TYPES:
        problems.append((_join(path, "_type"), f"must be one of {', '.join(TYPES)}"))
        return None
    if not isinstance(required, bool):
        problems.append((_join(path, "_required"), "must be true or false"))
        return None
    return FieldSpec(expr, kind, required)


def parse_group(raw: Mapping[str, Any], path: str, problems: Problems) -> GroupSpec:
    """A table of fields (the top of a mapping, a nested object or a list) as a GroupSpec."""
    fields: dict[str, FieldSpec | GroupSpec] = {}
    for key, value in raw.items():
        where = _join(path, key)
        if key.startswith("_"):
            if key not in _GROUP_OPTIONS:
                problems.append((where, f"unknown option; a table of fields takes {', '.join(sorted(_GROUP_OPTIONS))}"))
            continue
        if value is False:
            continue
        spec = _parse_value(value, where, problems)
        if spec is not None:
            fields[key] = spec
    each, when, required = raw.get("_each"), raw.get("_when"), raw.get("_required", False)
    concat = raw.get("_concat", False)
    for option, option_value in (("_each", each), ("_when", when)):
        if option_value is not None and not isinstance(option_value, str):
            problems.append((_join(path, option), "must be an expression in quotes"))
    for option, flag in (("_required", required), ("_concat", concat)):
        if not isinstance(flag, bool):
            problems.append((_join(path, option), "must be true or false"))
    group = GroupSpec(
        fields,
        each if isinstance(each, str) else None,
        when if isinstance(when, str) else None,
        required is True,
        concat is True,
    )
    _check_concat(group, path, problems)
    return group


def _check_concat(group: GroupSpec, path: str, problems: Problems) -> None:
    if not group.concat:
        return
    if group.each is not None:
        problems.append((_join(path, "_concat"), "a list made of parts takes its elements from the parts, not _each"))
    for key, child in group.fields.items():
        if not isinstance(child, GroupSpec) or child.each is None:
            problems.append((_join(path, key), "every part of a _concat list must be a table with _each"))


def merge(default: GroupSpec, override: Mapping[str, Any], path: str, problems: Problems) -> GroupSpec:
    """Lay a user's override (raw TOML table) over a default group."""
    fields = dict(default.fields)
    each, when, required = default.each, default.when, default.required
    for key, value in override.items():
        where = _join(path, key)
        if key.startswith("_"):
            if key not in _GROUP_OPTIONS:
                problems.append((where, f"unknown option; a table of fields takes {', '.join(sorted(_GROUP_OPTIONS))}"))
            elif key in ("_required", "_concat"):
                if not isinstance(value, bool):
                    problems.append((where, "must be true or false"))
                elif key == "_required":
                    required = value
                elif value != default.concat:
                    problems.append((where, "cannot be changed in an override; reset the field and redefine it"))
            elif not isinstance(value, str):
                problems.append((where, "must be an expression in quotes"))
            elif key == "_each":
                if default.each is None and fields:
                    problems.append((where, "this is an object in the default mapping, not a list"))
                each = value
            else:
                when = value
            continue
        current = fields.get(key)
        if value is False:
            fields.pop(key, None)
        elif isinstance(value, str):
            fields[key] = replace(current, expr=value) if isinstance(current, FieldSpec) else FieldSpec(value)
        elif isinstance(value, Mapping) and "_expr" in value:
            if isinstance(current, FieldSpec):
                base = {"_expr": current.expr, "_type": current.type, "_required": current.required}
                spec = _parse_field({**base, **value}, where, problems)
            else:
                spec = _parse_field(value, where, problems)
            if spec is not None:
                fields[key] = spec
        elif isinstance(value, Mapping):
            if isinstance(current, GroupSpec):
                fields[key] = merge(current, value, where, problems)
            else:
                fields[key] = parse_group(value, where, problems)
        else:
            problems.append(
                (where, "must be an expression in quotes, a table of fields, or false to leave the field out")
            )
    group = GroupSpec(fields, each, when, required, default.concat)
    _check_concat(group, path, problems)
    return group


def _quote(expr: str) -> str:
    """A TOML string for an expression: literal '...' when possible, else a basic string."""
    if "'" not in expr and "\n" not in expr:
        return f"'{expr}'"
    return json.dumps(expr, ensure_ascii=False)


def _field_text(spec: FieldSpec) -> str:
    if spec.type == "any" and not spec.required:
        return _quote(spec.expr)
    parts = [f"_expr = {_quote(spec.expr)}"]
    if spec.type != "any":
        parts.append(f'_type = "{spec.type}"')
    if spec.required:
        parts.append("_required = true")
    return "{ " + ", ".join(parts) + " }"


def flatten(group: GroupSpec, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, TOML value) for every field and option, in mapping order: what diff compares."""
    out: list[tuple[str, str]] = []
    if group.each is not None:
        out.append((_join(prefix, "_each"), _quote(group.each)))
    if group.when is not None:
        out.append((_join(prefix, "_when"), _quote(group.when)))
    if group.required and prefix:
        out.append((_join(prefix, "_required"), "true"))
    if group.concat:
        out.append((_join(prefix, "_concat"), "true"))
    for key, spec in group.fields.items():
        path = _join(prefix, _key(key))
        if isinstance(spec, FieldSpec):
            out.append((path, _field_text(spec)))
        else:
            out.extend(flatten(spec, path))
    return out


def _key(key: str) -> str:
    plain = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if plain else json.dumps(key, ensure_ascii=False)


def render_toml(group: GroupSpec, table: str) -> str:
    """The group as TOML under `[table]`, one `path = value` line per field (dotted keys)."""
    lines = [f"[{table}]"]
    lines.extend(f"{path} = {value}" for path, value in flatten(group))
    return "\n".join(lines) + "\n"
