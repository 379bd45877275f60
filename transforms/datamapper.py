"""The datamapper: a mapping (target field <- expression) compiled once, applied to many records.

    mapping = compile_mapping(spec, tables=tables, settings=settings, name="orders -> exactonline")
    payload = mapping.apply(order, context={"account": guid, "items": {"SKU-1": guid}})

`apply` turns the canonical record into the mapping input (`transforms.inputs.mapping_input`),
evaluates every field, converts each value to its field's `_type`, leaves out fields whose value is
undefined, and returns the payload. Every failing field is collected; if any failed, one
`MappingError` lists them all, naming the record, the field, the expression and the reason. An error
of the worker's context raised while a field is evaluated (`transforms.errors.PASSED_THROUGH`: a lazily
resolved id whose system is unavailable, or whose code it does not know) is not a field's problem: it
stops `apply` as it is.

The payload holds `Decimal` for decimal fields and never a float: a float produced by JSONata
arithmetic is converted through its shortest repr. `gateway.payload.dumps` writes it as JSON
with exact numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from jsonata.utils import Utils
from pydantic import BaseModel

from gateway.model import record_label, to_decimal
from gateway.payload import decimal_text
from transforms.errors import PASSED_THROUGH, FieldProblem, FunctionError, MappingError, MappingSpecError
from transforms.expressions import SLOW, Expression, ExpressionError, field_code
from transforms.functions import FUNCTIONS, RUN, Run
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
    run: Callable[[Any, Mapping[str, Any]], Any] = field(init=False, repr=False, compare=False)
    """`expr.evaluate` as one function; `convert` the value to `type` (both chosen once)."""
    convert: Callable[[Any], Any] = field(init=False, repr=False, compare=False)

    constant: Any = field(init=False, repr=False, compare=False)
    """The converted value of a literal expression (e.g. `1` as a decimal), else _FAILED."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", self.expr.evaluator())
        object.__setattr__(self, "convert", _converter(self.type))
        constant = _FAILED
        if self.expr.literal:
            try:
                constant = self.convert(self.expr.evaluate(None, {}))
            except Exception:  # then it fails for every record, and is reported for each
                constant = _FAILED
            if constant is None or isinstance(constant, list | dict):
                constant = _FAILED
        object.__setattr__(self, "constant", constant)


@dataclass(frozen=True)
class _Group:
    name: str
    children: tuple[_Field | _Group, ...]
    each: Expression | None = None
    when: Expression | None = None
    required: bool = False
    concat: bool = False
    apply: Callable[[Any, Mapping[str, Any], Any, list[FieldProblem]], dict[str, Any]] = field(
        init=False, repr=False, compare=False
    )
    """The group's object for one record or list element, generated once (see `_generate`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "apply", _generate(self))


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
    names: frozenset[str] | None = field(default=None, compare=False)
    """Every field name the expressions can read (None: any); the input is built for those only."""

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
        model = isinstance(record, BaseModel)
        data = mapping_input(record, self.settings, names=self.names) if model else dict(record)  # type: ignore[arg-type]
        variables = {"record": data, "context": context or {}, "settings": self.settings}
        problems: list[FieldProblem] = []
        token = RUN.set(Run(self.tables, context or {}, placeholders))
        try:
            payload = self.root.apply(data, variables, "", problems)
        finally:
            RUN.reset(token)
        if problems:
            if not label:
                label = record_label(record) if model else "record"  # type: ignore[arg-type]
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
    except PASSED_THROUGH:
        raise
    except (ExpressionError, FunctionError) as exc:
        problems.append(FieldProblem(path, _source(expr.source, exc), str(exc)))
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


def _join(path: str | tuple[str, int], name: str) -> str:
    """`path.name`; a list element's path comes as (list path, 1-based index)."""
    if type(path) is tuple:
        path = f"{path[0]}[{path[1]}]"
    return f"{path}.{name}" if path else name


def _source(source: str, exc: BaseException) -> str | None:
    """The expression shown with a field's problem; none for the mapping's own `$error(message)`."""
    return None if getattr(exc, "raised", False) else source


def _generate(group: _Group) -> Callable[[Any, Mapping[str, Any], Any, list[FieldProblem]], dict[str, Any]]:
    """One straight-line function per group: each field evaluated (a one-step path inline, the
    engine when the fast closure answers SLOW), converted to its `_type` and checked in turn, with
    no loop over the children; each nested group is handed to `_apply_child`. A literal field's
    converted value is computed once. Every failing field is still collected with its path."""
    namespace: dict[str, Any] = {
        "ExpressionError": ExpressionError,
        "FunctionError": FunctionError,
        "PASSED_THROUGH": PASSED_THROUGH,
        "FieldProblem": FieldProblem,
        "_source": _source,
        "join": _join,
        "child": _apply_child,
        "str": str,
        "type": type,
        "SLOW": SLOW,
    }
    lines = ["def apply(data, variables, path, problems):", "    out = {}"]
    for position, child in enumerate(group.children):
        if type(child) is not _Field:
            namespace[f"g{position}"] = child
            lines.append(f"    child(g{position}, data, variables, path, problems, out)")
            continue
        namespace[f"n{position}"] = child.name
        if child.constant is not _FAILED:
            namespace[f"k{position}"] = child.constant
            lines.append(f"    out[n{position}] = k{position}")
            continue
        fast = child.expr._fast
        namespace[f"r{position}"] = child.run if fast is None else fast
        namespace[f"e{position}"] = child.expr._engine_evaluate
        namespace[f"c{position}"] = child.convert
        namespace[f"s{position}"] = child.expr.source
        problem = f"problems.append(FieldProblem(join(path, n{position}), s{position}, "
        raised = f"problems.append(FieldProblem(join(path, n{position}), _source(s{position}, exc), "
        lines.append("    try:")
        inline = field_code(
            child.expr.ast, namespace, "value", slow="value = SLOW", indent="        ", key=f"p{position}"
        )
        if fast is not None and inline is not None:
            lines.extend(inline)
        else:
            lines.append(f"        value = r{position}(data, variables)")
        if fast is not None:
            lines.append(f"        if value is SLOW: value = e{position}(data, variables)")
        if child.type in ("any", "string"):
            lines.append(f"        if type(value) is not str: value = c{position}(value)")
        else:
            lines.append(f"        value = c{position}(value)")
        lines.append("    except PASSED_THROUGH:")
        lines.append("        raise")
        lines.append("    except (ExpressionError, FunctionError, ValueError) as exc:")
        lines.append(f"        {raised}str(exc)))")
        lines.append("    except Exception as exc:  # a transform function failing unexpectedly")
        lines.append(f"        {problem}f'failed ({{exc.__class__.__name__}})'))")
        lines.append("    else:")
        lines.append("        if value is not None:")
        lines.append(f"            out[n{position}] = value")
        if child.required:
            lines.append("        else:")
            lines.append(f"            {problem}'is required but the expression gave nothing'))")
    lines.append("    return out")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from the fixed template above
    apply: Callable[[Any, Mapping[str, Any], Any, list[FieldProblem]], dict[str, Any]] = namespace["apply"]
    return apply


def _apply_child(
    child: _Group,
    data: Any,
    variables: Mapping[str, Any],
    path: str,
    problems: list[FieldProblem],
    out: dict[str, Any],
) -> None:
    """A nested group (`_when`, `_concat`, `_each` or a plain object) into `out`."""
    where = _join(path, child.name)
    if child.when is not None:
        test = _evaluate(child.when, data, variables, f"{where}._when", problems)
        if test is _FAILED or not _truthy(test):
            return
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
        return
    if child.each is None:
        sub = child.apply(data, variables, where, problems)
        if sub:
            out[child.name] = sub
        elif child.required:
            problems.append(FieldProblem(where, None, "is required but none of its fields has a value"))
        return
    rows = []
    if _apply_list(child, data, variables, where, problems, rows) and not rows and child.required:
        problems.append(FieldProblem(f"{where}._each", child.each.source, "is required but gave no elements"))
        return
    out[child.name] = rows


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
    each = group.each
    assert each is not None
    try:
        items = each.items(data, variables)
    except PASSED_THROUGH:
        raise
    except (ExpressionError, FunctionError) as exc:
        problems.append(FieldProblem(f"{where}._each", each.source, str(exc)))
        return False
    except Exception as exc:  # a transform function failing unexpectedly is still this field's problem
        problems.append(FieldProblem(f"{where}._each", each.source, f"failed ({exc.__class__.__name__})"))
        return False
    if type(items) is not list:
        if items is None or items is _NULL:
            return True
        items = list(items) if isinstance(items, list) else [items]
    if not items:
        return True
    scoped = dict(variables)  # one scope for the list: only "index" changes, and nothing keeps it
    apply = group.apply
    index = len(rows)
    for item in items:
        index += 1
        scoped["index"] = index
        rows.append(apply(item, scoped, (where, index), problems))  # the path "where[index]", made on error
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


def _converter(kind: str) -> Callable[[Any], Any]:
    """`_convert(value, kind)` with the commonest case (text) answered first."""
    if kind in ("any", "string"):

        def text(value: Any) -> Any:
            return value if type(value) is str else _convert(value, kind)

        return text
    if kind == "decimal":

        def decimal(value: Any) -> Any:
            if type(value) is str and len(value) <= 64:  # to_decimal's checks, inline for decimal text
                try:
                    number = Decimal(value)  # ignores surrounding white space, as to_decimal's strip()
                except InvalidOperation:
                    return _convert(value, kind)  # its error (or None for blank text)
                if number.is_finite() and (not number or -12 <= number.adjusted() <= 15):
                    return number
            return _convert(value, kind)

        return decimal

    def other(value: Any) -> Any:
        return _convert(value, kind)

    return other


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
    exprs = _expressions(root)
    ids = frozenset(i for e in exprs for i in e.ids_used)
    reads = [e.names_read for e in exprs]
    names = None if any(r is None for r in reads) else frozenset().union(*(r for r in reads if r is not None))
    return CompiledMapping(name, root, dict(tables or {}), dict(settings or {}), ids, names)
