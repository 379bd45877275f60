"""One compiled mapping expression: JSONata (jsonata-python), parsed once, evaluated many times.

Safety: JSONata reaches only the data it is given and the functions registered with it; there is
no attribute access, import or eval of Python. Each evaluation runs under a guard that stops it
after `TIMEOUT_MS` or `MAX_DEPTH` nested steps (jsonata-python's own time box starts its clock
when the expression is *compiled*, so it cannot be used for expressions that are kept).

Speed: most mapping expressions are plain paths (`billing_address.city`), literals, Koppel
function calls, `&` concatenations, conditions and `??` defaults. Those are also compiled into a
small tree of Python closures that gives the same result as the engine for ordinary JSON values;
whenever such a closure meets anything else (a list where JSONata would map or flatten, a
number where JSONata would format), it answers `SLOW` and the full engine evaluates the
expression instead. The engine stays the reference: tests compare both on every default mapping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jsonata import Jsonata
from jsonata.jexception import JException
from jsonata.parser import Parser
from jsonata.utils import Utils

from transforms.errors import FunctionError

__all__ = ["SLOW", "VARIABLES", "Expression", "ExpressionError"]

TIMEOUT_MS = 1000
MAX_DEPTH = 400
VARIABLES = ("record", "context", "settings", "index")
"""Variables every expression can read: the whole record, resolved target ids, the integration's
settings, and the 1-based position of the current element inside a list (`_each`)."""

SLOW: Any = object()
"""Answer of a fast closure that cannot be sure: evaluate with the engine."""

_NULL = Utils.NULL_VALUE
Fast = Callable[[Any, Mapping[str, Any]], Any]

_HINTS = {
    "T2001": "money and quantities are exact decimal text in Koppel: use $add, $sub, $mul, $div or $round",
    "T2002": "money and quantities are exact decimal text in Koppel: use $add, $sub, $mul, $div or $round",
    "T1006": "that name is not a function; see the list of functions in docs/datamapper.md",
    "D1012": "the expression ran too long",
    "D1011": "the expression nests or recurses too deeply",
}


class ExpressionError(Exception):
    """An expression does not compile, or failed while evaluating; the message is for the user."""


def _engine_message(exc: JException) -> str:
    message = str(exc)
    code = getattr(exc, "error", "")
    hint = _HINTS.get(code)
    return f"{message} ({code}; {hint})" if hint else f"{message} ({code})"


class _Guard:
    """Per-evaluation runaway protection, installed through JSONata's evaluate callbacks."""

    __slots__ = ("deadline", "depth")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + TIMEOUT_MS / 1000
        self.depth = 0

    def enter(self, _expr: Any, _input: Any, _env: Any) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise JException("D1011", -1)
        if time.monotonic() > self.deadline:
            raise JException("D1012", -1, TIMEOUT_MS)

    def exit(self, _expr: Any, _input: Any, _env: Any, _result: Any) -> None:
        self.depth -= 1


class Expression:
    """A JSONata expression compiled once; `evaluate(data, variables)` many times."""

    __slots__ = ("_engine", "_fast", "_items", "functions_used", "ids_used", "source", "tables_used")

    def __init__(self, source: str, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.source = source
        if not source.strip():
            raise ExpressionError("the expression is empty")
        try:
            engine = Jsonata(source)
        except JException as exc:
            raise ExpressionError(f"does not compile: {_engine_message(exc)}") from None
        except Exception as exc:  # the parser fails on some inputs with KeyError/IndexError ("~")
            raise ExpressionError(f"does not compile: syntax error ({exc.__class__.__name__})") from None
        if engine.errors:
            raise ExpressionError(f"does not compile: {engine.errors[0]}")
        engine.set_validate_input(False)
        for name, function in functions.items():
            engine.register_lambda(name, function)
        self._engine = engine
        self.functions_used: set[str] = set()
        self.tables_used: list[tuple[str, int]] = []
        self.ids_used: set[str] = set()
        self._check_names(engine.ast, functions)
        self._fast: Fast | None = _fast(engine.ast, functions)
        self._items: Fast | None = _items(engine.ast)

    @property
    def is_fast(self) -> bool:
        return self._fast is not None

    def _check_names(self, ast: Any, functions: Mapping[str, Any]) -> None:
        """Unknown functions and variables are compile errors, with the names that do exist."""
        nodes = list(_walk(ast))
        bound = {""} | {"$"}
        for node in nodes:
            kind = getattr(node, "type", None)
            if kind == "bind" and getattr(node.lhs, "value", None) is not None:
                bound.add(str(node.lhs.value))
            elif kind == "lambda":
                bound.update(str(a.value) for a in node.arguments or [] if getattr(a, "value", None) is not None)
            for attr in ("focus", "index"):
                if isinstance(getattr(node, attr, None), str):
                    bound.add(node.__dict__[attr])
        for node in nodes:
            kind = getattr(node, "type", None)
            if kind == "function" and getattr(node.procedure, "type", None) == "variable":
                name = str(node.procedure.value)
                self.functions_used.add(name)
                if name not in bound and name not in functions and self._engine.environment.lookup(name) is None:
                    raise ExpressionError(
                        f"unknown function ${name}; Koppel's own: " + ", ".join(f"${n}" for n in functions)
                    )
                args = node.arguments or []
                if name == "table" and args and getattr(args[0], "type", None) == "string":
                    self.tables_used.append((str(args[0].value), len(args)))
                if name == "id" and args and getattr(args[0], "type", None) == "string":
                    self.ids_used.add(str(args[0].value))
        for node in nodes:
            if getattr(node, "type", None) != "variable":
                continue
            name = str(node.value)
            if name in bound or name in VARIABLES or name in functions or name in self.functions_used:
                continue
            if self._engine.environment.lookup(name) is None:
                raise ExpressionError(f"unknown variable ${name}; available: " + ", ".join(f"${v}" for v in VARIABLES))

    def evaluate_items(self, data: Any, variables: Mapping[str, Any]) -> Any:
        """Like `evaluate`, for `_each`: a plain path to a list of objects is read directly."""
        if self._items is not None:
            value = self._items(data, variables)
            if value is not SLOW:
                return value
        return self.evaluate(data, variables)

    def evaluate(self, data: Any, variables: Mapping[str, Any]) -> Any:
        """The expression's value for `data`; raises ExpressionError or FunctionError."""
        if self._fast is not None:
            value = self._fast(data, variables)
            if value is not SLOW:
                return value
        guard = _Guard()
        bindings = dict(variables)
        bindings["__evaluate_entry"] = guard.enter
        bindings["__evaluate_exit"] = guard.exit
        try:
            return Utils.convert_nulls(self._engine.evaluate(data, bindings))
        except FunctionError:
            raise
        except JException as exc:
            raise ExpressionError(_engine_message(exc)) from None
        except RecursionError:
            raise ExpressionError("the expression nests or recurses too deeply") from None
        except Exception as exc:  # any other failure inside the engine is this expression's failure
            raise ExpressionError(f"the expression failed ({exc.__class__.__name__}: {str(exc)[:200]})") from None


def _walk(node: Any) -> Iterator[Any]:
    """Every parser node below `node` (AST attributes only; back-references are skipped)."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(item)
            continue
        if not isinstance(item, Parser.Symbol) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        for key, value in vars(item).items():
            if key in ("_outer_instance", "ancestor", "slot", "nud", "led") or value is None:
                continue
            if isinstance(value, Parser.Symbol | list | tuple):
                stack.append(value)


# --- the fast subset --------------------------------------------------------------------------


def _items(ast: Any) -> Fast | None:
    """For `_each`: a plain path read directly; a path whose last step filters (`discounts[x = y]`)
    answers [] at once when the list before the filter is empty, else SLOW."""
    if getattr(ast, "type", None) != "path" or not _plain(ast):
        return None
    direct = _path(ast, lists=True)
    if direct is not None:
        return direct
    steps = ast.steps or []
    last = steps[-1] if steps else None
    if last is None or last.type != "name" or not all(_plain(s) and s.type == "name" for s in steps[:-1]):
        return None
    if any(getattr(last, a, None) for a in ("predicate", "group", "focus", "index", "keep_array", "tuple")):
        return None
    if not all(getattr(stage, "type", None) == "filter" for stage in last.stages or []):
        return None
    names = tuple(str(s.value) for s in steps)

    def base(data: Any, _variables: Mapping[str, Any]) -> Any:
        current = data
        for name in names:
            if not isinstance(current, dict):
                return SLOW
            current = current.get(name)
        return [] if current is None or current == [] else SLOW

    return base


def _plain(node: Any) -> bool:
    """No predicates, grouping, focus/index binding, keep-array or sorting on this node."""
    return not any(
        getattr(node, attr, None)
        for attr in ("predicate", "stages", "group", "focus", "index", "keep_array", "tuple", "consarray")
    )


def _fast(node: Any, functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    """A closure computing `node` for ordinary values, or None when `node` is outside the subset."""
    if not _plain(node):
        return None
    kind = getattr(node, "type", None)
    if kind in ("string", "number"):
        constant = node.value
        return lambda _data, _vars: constant
    if kind == "value":
        constant = None if node.value is None else node.value
        return lambda _data, _vars: constant
    if kind == "variable":
        return _variable(str(node.value))
    if kind == "path":
        return _path(node)
    if kind == "function":
        return _function(node, functions)
    if kind == "binary":
        return _binary(node, functions)
    if kind == "condition":
        return _condition(node, functions)
    if kind == "block" and len(node.expressions or []) == 1:
        return _fast(node.expressions[0], functions)
    if kind == "unary" and node.value == "[":
        return _array(node, functions)
    return None


def _variable(name: str) -> Fast | None:
    if name == "":
        return lambda data, _vars: SLOW if isinstance(data, list) else data
    if name not in VARIABLES:
        return None

    def read(_data: Any, variables: Mapping[str, Any]) -> Any:
        value = variables.get(name)
        return SLOW if isinstance(value, list) else value

    return read


def _path(node: Any, *, lists: bool = False) -> Fast | None:
    """A plain path; with `lists`, a final list of objects is returned as it is (for `_each`)."""
    steps = node.steps or []
    if not steps or not all(_plain(s) for s in steps):
        return None
    start: Fast | None = None
    if steps[0].type == "variable":
        start = _variable(str(steps[0].value))
        if start is None:
            return None
        steps = steps[1:]
    if not all(s.type == "name" for s in steps):
        return None
    names = tuple(str(s.value) for s in steps)
    if start is None and len(names) == 1 and not lists:
        return _one_step(names[0])

    def walk(data: Any, variables: Mapping[str, Any]) -> Any:
        current = start(data, variables) if start is not None else data
        if current is SLOW:
            return SLOW
        for name in names:
            if isinstance(current, dict):
                parent, current = current, current.get(name)
                if current is None and name in parent:
                    return SLOW  # JSON null exists for JSONata ($exists, ??); undefined does not
            elif current is None:
                return None
            else:
                return SLOW  # a list maps over its items; a scalar has no fields: let JSONata decide
        if isinstance(current, list):
            if lists and all(isinstance(item, dict) for item in current):
                return current
            return SLOW
        return current

    return walk


_ABSENT: Any = object()


def _one_step(name: str) -> Fast:
    """The commonest path, `field`, without a loop (same answers as `walk`)."""

    def step(data: Any, _variables: Mapping[str, Any]) -> Any:
        if type(data) is dict:
            value = data.get(name, _ABSENT)
            if value is _ABSENT:
                return None
            if value is None or type(value) is list:
                return SLOW
            return value
        return None if data is None else SLOW

    return step


def _function(node: Any, functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    procedure = node.procedure
    if getattr(procedure, "type", None) != "variable" or not _plain(procedure):
        return None
    name = str(procedure.value)
    args = [_fast(a, functions) for a in node.arguments or []]
    if any(a is None for a in args):
        return None
    compiled: tuple[Fast, ...] = tuple(a for a in args if a is not None)
    if name == "exists" and len(compiled) == 1:  # what `a ?? b` compiles to
        (only,) = compiled

        def exists(data: Any, variables: Mapping[str, Any]) -> Any:
            value = only(data, variables)
            return SLOW if value is SLOW else value is not None

        return exists
    function = functions.get(name)
    if function is None:
        return None

    if len(compiled) == 1:
        (first,) = compiled

        def call1(data: Any, variables: Mapping[str, Any]) -> Any:
            value = first(data, variables)
            if value is SLOW:
                return SLOW
            result = function(value)
            return SLOW if isinstance(result, list) else result

        return call1
    if len(compiled) == 2:
        first, second = compiled

        def call2(data: Any, variables: Mapping[str, Any]) -> Any:
            a = first(data, variables)
            if a is SLOW:
                return SLOW
            b = second(data, variables)
            if b is SLOW:
                return SLOW
            result = function(a, b)
            return SLOW if isinstance(result, list) else result

        return call2

    def call(data: Any, variables: Mapping[str, Any]) -> Any:
        values = []
        for arg in compiled:
            value = arg(data, variables)
            if value is SLOW:
                return SLOW
            values.append(value)
        result = function(*values)
        return SLOW if isinstance(result, list) else result

    return call


def _truth(value: Any) -> Any:
    """JSONata's boolean cast for the values the fast path handles; SLOW for the rest."""
    if value is None or value is _NULL:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str | dict):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0
    return SLOW


def _binary(node: Any, functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    op = node.value
    if op not in ("&", "=", "!=", "and", "or"):
        return None
    left, right = _fast(node.lhs, functions), _fast(node.rhs, functions)
    if left is None or right is None:
        return None
    if op == "&":

        def concat(data: Any, variables: Mapping[str, Any]) -> Any:
            a, b = left(data, variables), right(data, variables)
            if (a is not None and not isinstance(a, str)) or (b is not None and not isinstance(b, str)):
                return SLOW  # numbers, booleans and objects are formatted by JSONata's $string
            return (a or "") + (b or "")

        return concat
    if op in ("=", "!="):
        negate = op == "!="

        def equal(data: Any, variables: Mapping[str, Any]) -> Any:
            a, b = left(data, variables), right(data, variables)
            if a is SLOW or b is SLOW:
                return SLOW
            if a is None or b is None:
                return False
            if type(a) is not type(b) or not isinstance(a, str | int | bool):
                return SLOW
            return (a != b) if negate else (a == b)

        return equal
    conjunction = op == "and"

    def logic(data: Any, variables: Mapping[str, Any]) -> Any:
        a = _truth(left(data, variables))
        if a is SLOW:
            return SLOW
        if a is not conjunction:  # False and … / True or …
            return a
        return _truth(right(data, variables))

    return logic


def _condition(node: Any, functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    test = _fast(node.condition, functions)
    then = _fast(node.then, functions)
    otherwise = _fast(node._else, functions) if getattr(node, "_else", None) is not None else None
    if test is None or then is None or (getattr(node, "_else", None) is not None and otherwise is None):
        return None

    def choose(data: Any, variables: Mapping[str, Any]) -> Any:
        value = test(data, variables)
        if value is SLOW:
            return SLOW
        truth = _truth(value)
        if truth is SLOW:
            return SLOW
        if truth:
            return then(data, variables)
        return otherwise(data, variables) if otherwise is not None else None

    return choose


def _array(node: Any, functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    items = [_fast(e, functions) for e in node.expressions or []]
    if any(i is None for i in items):
        return None
    compiled = tuple(i for i in items if i is not None)

    def build(data: Any, variables: Mapping[str, Any]) -> Any:
        out = []
        for item in compiled:
            value = item(data, variables)
            if value is SLOW or isinstance(value, list | dict):
                return SLOW
            if value is not None:
                out.append(value)
        return out

    return build
