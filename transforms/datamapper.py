"""The datamapper: a mapping (target field <- expression) compiled once, applied to many records.

    mapping = compile_mapping(spec, tables=tables, settings=settings, name="orders -> exactonline")
    payload = mapping.apply(order, context={"account": guid, "items": {"SKU-1": guid}})

`apply` turns the canonical record into the mapping input (`transforms.inputs.mapping_input`),
evaluates every field, converts each value to its field's `_type`, leaves out fields whose value is
undefined, and returns the payload. Every failing field is collected; if any failed, one
`MappingError` lists them all, naming the record, the field, the expression and the reason.

The payload holds `Decimal` for decimal fields and never a float: a float produced by JSONata
arithmetic is converted through its shortest repr. `transforms.payload.dumps` writes it as JSON
with exact numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from jsonata.utils import Utils
from pydantic import BaseModel

from gateway.model import record_label, to_decimal
from transforms.errors import FieldProblem, FunctionError, MappingError, MappingSpecError
from transforms.expressions import Expression, ExpressionError
from transforms.functions import FUNCTIONS, RUN, Run, decimal_text
from transforms.inputs import mapping_input
from transforms.spec import FieldSpec, GroupSpec, Problems
from transforms.tables import MappingTable

__all__ = ["CompiledMapping", "compile_mapping"]

_NULL = Utils.NULL_VALUE


@dataclass(frozen=True)
class _Field:
    name: str
    expr: Expression
    type: str
    required: bool


@dataclass(frozen=True)
class _Group:
    name: str
    children: tuple[_Field | _Group, ...]
    each: Expression | None = None
    when: Expression | None = None
    required: bool = False
    concat: bool = False


def _compile_expr(source: str, path: str, problems: Problems) -> Expression | None:
    try:
        return Expression(source, FUNCTIONS)
    except ExpressionError as exc:
        problems.append((path, str(exc)))
        return None


def _compile_group(name: str, spec: GroupSpec, path: str, problems: Problems) -> _Group:
    children: list[_Field | _Group] = []
    for key, child in spec.fields.items():
        where = f"{path}.{key}" if path else key
        if isinstance(child, FieldSpec):
            expr = _compile_expr(child.expr, where, problems)
            if expr is not None:
                children.append(_Field(key, expr, child.type, child.required))
        else:
            children.append(_compile_group(key, child, where, problems))
    each = _compile_expr(spec.each, f"{path}._each" if path else "_each", problems) if spec.each else None
    when = _compile_expr(spec.when, f"{path}._when" if path else "_when", problems) if spec.when else None
    return _Group(name, tuple(children), each, when, spec.required, spec.concat)


def _expressions(group: _Group) -> list[Expression]:
    out = [e for e in (group.each, group.when) if e is not None]
    for child in group.children:
        out.extend([child.expr] if isinstance(child, _Field) else _expressions(child))
    return out


@dataclass(frozen=True)
class CompiledMapping:
    """A mapping ready to apply. `ids` names the context entries its expressions ask for with
    `$id(...)` (e.g. {"account", "items"}), so a worker resolves only those."""

    name: str
    root: _Group
    tables: Mapping[str, MappingTable] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    ids: frozenset[str] = frozenset()

    @property
    def fast_ratio(self) -> tuple[int, int]:
        """(expressions on the fast path, all expressions): for the benchmark and the curious."""
        exprs = _expressions(self.root)
        return sum(e.is_fast for e in exprs), len(exprs)

    def apply(
        self,
        record: BaseModel | Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
        *,
        placeholders: bool = False,
        label: str | None = None,
    ) -> dict[str, Any]:
        """The target payload for `record` (a canonical record, or an already built mapping input).

        `context` carries target ids resolved at run time ($id); with `placeholders` a missing id
        shows as "<items:SKU>" instead of failing (preview). Raises MappingError.
        """
        if isinstance(record, BaseModel):
            data = mapping_input(record, self.settings)
            label = label or record_label(record)
        else:
            data = dict(record)
            label = label or "record"
        variables = {"record": data, "context": context or {}, "settings": self.settings}
        problems: list[FieldProblem] = []
        token = RUN.set(Run(self.tables, context or {}, placeholders))
        try:
            payload = _apply_group(self.root, data, variables, "", problems)
        finally:
            RUN.reset(token)
        if problems:
            raise MappingError(label, problems, mapping=self.name)
        return payload or {}


def _evaluate(
    expr: Expression,
    data: Any,
    variables: Mapping[str, Any],
    path: str,
    problems: list[FieldProblem],
    *,
    items: bool = False,
) -> Any:
    try:
        return expr.evaluate_items(data, variables) if items else expr.evaluate(data, variables)
    except (ExpressionError, FunctionError) as exc:
        problems.append(FieldProblem(path, expr.source, str(exc)))
    except Exception as exc:  # a transform function failing unexpectedly is still this field's problem
        problems.append(FieldProblem(path, expr.source, f"failed ({exc.__class__.__name__})"))
    return _FAILED


_FAILED: Any = object()


def _truthy(value: Any) -> bool:
    if value is None or value is _NULL:
        return False
    if isinstance(value, list | dict | str):
        return bool(value)
    return bool(value)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _apply_group(
    group: _Group, data: Any, variables: Mapping[str, Any], path: str, problems: list[FieldProblem]
) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for child in group.children:
        if type(child) is _Field:
            try:
                value = child.expr.evaluate(data, variables)
                if type(value) is not str or child.type != "any":
                    value = _convert(value, child.type)
            except (ExpressionError, FunctionError, ValueError) as exc:
                problems.append(FieldProblem(_join(path, child.name), child.expr.source, str(exc)))
                continue
            except Exception as exc:  # a transform function failing unexpectedly is still this field's problem
                reason = f"failed ({exc.__class__.__name__})"
                problems.append(FieldProblem(_join(path, child.name), child.expr.source, reason))
                continue
            if value is None:
                if child.required:
                    reason = "is required but the expression gave nothing"
                    problems.append(FieldProblem(_join(path, child.name), child.expr.source, reason))
                continue
            out[child.name] = value
            continue
        where = _join(path, child.name)
        if child.when is not None:
            test = _evaluate(child.when, data, variables, f"{where}._when", problems)
            if test is _FAILED or not _truthy(test):
                continue
        if child.concat:
            rows: list[dict[str, Any]] = []
            for part in child.children:
                if not isinstance(part, _Group):
                    continue
                if part.when is not None:
                    test = _evaluate(part.when, data, variables, f"{where}.{part.name}._when", problems)
                    if test is _FAILED or not _truthy(test):
                        continue
                _apply_list(part, data, variables, f"{where}.{part.name}", problems, rows)
            if not rows and child.required:
                problems.append(FieldProblem(where, None, "is required but none of its parts gave elements"))
            out[child.name] = rows
            continue
        if child.each is None:
            sub = _apply_group(child, data, variables, where, problems)
            if sub:
                out[child.name] = sub
            elif child.required:
                problems.append(FieldProblem(where, None, "is required but none of its fields has a value"))
            continue
        rows = []
        if _apply_list(child, data, variables, where, problems, rows) and not rows and child.required:
            problems.append(FieldProblem(f"{where}._each", child.each.source, "is required but gave no elements"))
            continue
        out[child.name] = rows
    return out


def _apply_list(
    group: _Group,
    data: Any,
    variables: Mapping[str, Any],
    where: str,
    problems: list[FieldProblem],
    rows: list[dict[str, Any]],
) -> bool:
    """Append one object per element of the group's `_each` to `rows` (numbered on from them);
    False when `_each` itself failed."""
    assert group.each is not None
    items = _evaluate(group.each, data, variables, f"{where}._each", problems, items=True)
    if items is _FAILED:
        return False
    if items is None or items is _NULL:
        items = []
    elif not isinstance(items, list):
        items = [items]
    for item in items:
        index = len(rows) + 1
        scoped = {**variables, "index": index}
        rows.append(_apply_group(group, item, scoped, f"{where}[{index}]", problems) or {})
    return True


def _exact(value: Any) -> Any:
    """Floats become exact decimals (through their shortest repr); JSONata sequences plain lists."""
    if value is _NULL:
        return None
    if isinstance(value, float):
        return to_decimal(repr(value)) if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, list):
        return [_exact(v) for v in value]
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    return value


def _convert(value: Any, kind: str) -> Any:
    """The field's value as its `_type`; ValueError with a sentence when it cannot be."""
    if value is None or value is _NULL:
        return None
    if kind == "any":
        return value if isinstance(value, str | int | Decimal) else _exact(value)
    if isinstance(value, list) and kind != "any":
        raise ValueError(f"expected one {kind.replace('_', ' ')} value, got a list")
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool | dict):
            raise ValueError("expected text, got " + ("a boolean" if isinstance(value, bool) else "an object"))
        return decimal_text(to_decimal(repr(value) if isinstance(value, float) else value))
    if kind in ("decimal", "decimal_text"):
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, bool | dict):
            raise ValueError("expected a decimal number")
        try:
            number = to_decimal(repr(value) if isinstance(value, float) else value)
        except ValueError as exc:
            raise ValueError(f"expected a decimal number: {exc}") from None
        return number if kind == "decimal" else decimal_text(number)
    if kind == "integer":
        if isinstance(value, bool | dict):
            raise ValueError("expected a whole number")
        try:
            number = to_decimal(repr(value) if isinstance(value, float) else value)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if number != number.to_integral_value():
            raise ValueError(f"expected a whole number, got {decimal_text(number)}")
        return int(number)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise ValueError("expected true or false")
    raise ValueError(f"unknown type {kind}")  # pragma: no cover - spec.TYPES is checked at parse time


def compile_mapping(
    spec: GroupSpec,
    *,
    tables: Mapping[str, MappingTable] | None = None,
    settings: Mapping[str, Any] | None = None,
    name: str = "",
) -> CompiledMapping:
    """Compile every expression of `spec`; raise MappingSpecError listing every field that fails."""
    problems: Problems = []
    root = _compile_group("", spec, "", problems)
    if problems:
        raise MappingSpecError(problems)
    ids = frozenset(i for e in _expressions(root) for i in e.ids_used)
    return CompiledMapping(name, root, dict(tables or {}), dict(settings or {}), ids)
