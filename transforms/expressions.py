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

from transforms.errors import PASSED_THROUGH, FunctionError
from transforms.functions import (
    RUN,
    _text,
    fn_add,
    fn_decimal,
    fn_div,
    fn_format_date,
    fn_id,
    fn_left,
    fn_lower,
    fn_mul,
    fn_neg,
    fn_round,
    fn_sub,
    fn_table,
    fn_upper,
    table_lookup,
)

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

    raised = False
    """True for the mapping's own `$error(message)`: the message says it all, the expression need not be shown."""


class RaisedError(ExpressionError):
    """`$error(message)` in a mapping: a record the mapping refuses, in the mapping's words."""

    raised = True


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

    __slots__ = (
        "_engine",
        "_fast",
        "_items",
        "_items_run",
        "functions_used",
        "ids_used",
        "literal",
        "names_read",
        "source",
        "tables_used",
    )

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
        self.names_read: frozenset[str] | None = _names_read(engine.ast, functions)
        """Every field name the expression may read at any depth; None when it may read a whole
        object without naming its fields (`$`, `$record`, `*`, `**`, a builtin on its context)."""
        self._fast: Fast | None = _fast(engine.ast, functions)
        self.literal = _constant(engine.ast)[0] and self._fast is not None
        """A plain text, number, boolean or null literal: the same value for every record."""
        self._items: Fast | None = _items(engine.ast)
        self._items_run: Callable[[Any, Mapping[str, Any]], Any] | None = None

    @property
    def ast(self) -> Any:
        """The parsed expression (jsonata-python's parser nodes)."""
        return self._engine.ast

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

    def evaluator(self) -> Callable[[Any, Mapping[str, Any]], Any]:
        """`evaluate` as one plain function (the fast closure, the engine when it answers SLOW)."""
        fast, slow = self._fast, self._engine_evaluate
        if fast is None:
            return slow

        def evaluate(data: Any, variables: Mapping[str, Any]) -> Any:
            value = fast(data, variables)
            if value is SLOW:
                return slow(data, variables)
            return value

        return evaluate

    @property
    def items(self) -> Callable[[Any, Mapping[str, Any]], Any]:
        """`evaluate_items` as one plain function (made once)."""
        if self._items_run is None:
            fast, slow = self._items, self.evaluate
            if fast is None:
                self._items_run = slow
            else:

                def items(data: Any, variables: Mapping[str, Any]) -> Any:
                    value = fast(data, variables)
                    return slow(data, variables) if value is SLOW else value

                self._items_run = items
        return self._items_run

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
        return self._engine_evaluate(data, variables)

    def _engine_evaluate(self, data: Any, variables: Mapping[str, Any]) -> Any:
        """The expression's value from the JSONata engine, under the guard."""
        guard = _Guard()
        bindings = dict(variables)
        bindings["__evaluate_entry"] = guard.enter
        bindings["__evaluate_exit"] = guard.exit
        try:
            return Utils.convert_nulls(self._engine.evaluate(data, bindings))
        except FunctionError:
            raise
        except PASSED_THROUGH:
            raise
        except JException as exc:
            if getattr(exc, "error", "") == "D3137":  # $error(message)
                raise RaisedError(str(exc)) from None
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


_WHOLE = ("", "$", "record")
_WHOLE_KINDS = ("wildcard", "descendant", "parent", "apply", "partial", "transform")
_CONTEXT_FREE = frozenset(("now", "millis", "random"))


def _names_read(ast: Any, functions: Mapping[str, Any]) -> frozenset[str] | None:
    nodes = list(_walk(ast))
    named: set[int] = set()  # `$record.x` / `$.x`: the variable only starts a path to a field
    for node in nodes:
        steps = getattr(node, "steps", None) if getattr(node, "type", None) == "path" else None
        if steps and len(steps) > 1 and getattr(steps[1], "type", None) == "name":
            named.add(id(steps[0]))
    names: set[str] = set()
    for node in nodes:
        kind = getattr(node, "type", None)
        if kind == "name":
            names.add(str(node.value))
        elif (kind == "variable" and node.value in _WHOLE and id(node) not in named) or kind in _WHOLE_KINDS:
            return None
        elif kind == "function":
            procedure = node.procedure
            if getattr(procedure, "type", None) != "variable":
                return None
            name = str(procedure.value)
            if name not in functions and (name == "eval" or (not node.arguments and name not in _CONTEXT_FREE)):
                return None
    return frozenset(names)


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
    if not lists:
        return _walk_code(str(node.steps[0].value) if start is not None else None, names)
    if start is None and len(names) == 1:
        return _one_list(names[0])

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


def _walk_code(variable: str | None, names: tuple[str, ...]) -> Fast:
    """`walk` below for one path, generated as straight-line code (same answers)."""
    namespace: dict[str, Any] = {"SLOW": SLOW, "isinstance": isinstance, "dict": dict, "list": list, "str": str}
    lines = ["def path(data, variables):"]
    if variable is None:
        lines.append("    c = data")
    elif variable == "":
        lines.append("    if isinstance(data, list): return SLOW")
        lines.append("    c = data")
    else:
        namespace["v"] = variable
        lines.append("    c = variables.get(v)")
        lines.append("    if type(c) is not dict and isinstance(c, list): return SLOW")
    for position, name in enumerate(names):
        namespace[f"n{position}"] = name
        lines.append("    if type(c) is dict or isinstance(c, dict):")
        lines.append(f"        p = c; c = p.get(n{position})")
        lines.append(f"        if c is None and n{position} in p: return SLOW")
        lines.append("    elif c is None: return None")
        lines.append("    else: return SLOW")
    lines.append("    return c if type(c) is str or not isinstance(c, list) else SLOW")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from the fixed template above
    path: Fast = namespace["path"]
    return path


def _one_list(name: str) -> Fast:
    """`walk` with `lists` for the commonest `_each`, `lines` (same answers)."""

    def items(data: Any, _variables: Mapping[str, Any]) -> Any:
        if isinstance(data, dict):
            current = data.get(name)
            if current is None and name in data:
                return SLOW
        elif data is None:
            return None
        else:
            return SLOW
        if isinstance(current, list):
            for item in current:
                if not isinstance(item, dict):
                    return SLOW
        return current

    return items


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


_CONSTANT = ("string", "number", "value")


def _constant(node: Any) -> tuple[bool, Any]:
    """(True, value) for a literal argument (folded into the call), else (False, None)."""
    if getattr(node, "type", None) in _CONSTANT and _plain(node):
        return True, node.value
    return False, None


_TEXT_RESULT = frozenset(
    (fn_decimal, fn_round, fn_add, fn_sub, fn_mul, fn_div, fn_neg, fn_upper, fn_lower, fn_left, fn_format_date)
)
"""Koppel functions that answer text or None, never a list: their result needs no list check."""


def _left(value: Fast, length: Any) -> Fast | None:
    """`$left(x, n)` with a literal n that `fn_left` accepts: the slice, without the call."""
    if isinstance(length, bool) or not isinstance(length, int | float) or length < 0 or length != int(length):
        return None
    count = int(length)

    def left(data: Any, variables: Mapping[str, Any]) -> Any:
        text = value(data, variables)
        if type(text) is str:
            return text[:count]
        if text is SLOW:
            return SLOW
        text = _text(text)
        return None if text is None else text[:count]

    return left


def _function(node: Any, functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    procedure = node.procedure
    if getattr(procedure, "type", None) != "variable" or not _plain(procedure):
        return None
    name = str(procedure.value)
    nodes = node.arguments or []
    args = [_fast(a, functions) for a in nodes]
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
    constants = [_constant(a) for a in nodes]
    if function is fn_left and len(nodes) == 2 and not constants[0][0] and constants[1][0]:
        left = _left(compiled[0], constants[1][1])
        if left is not None:
            return left
    if function is fn_id and len(nodes) == 2 and constants[0][0] and not constants[1][0]:
        ident = _id(constants[0][1], nodes[1], compiled[1])
        if ident is not None:
            return ident
    if function is fn_table and 2 <= len(nodes) <= 3 and all(c[0] for i, c in enumerate(constants) if i != 1):
        table = _table(constants[0][1], nodes[1], tuple(c[1] for c in constants[2:]), functions)
        if table is not None:
            return table
    return _call(function, compiled, constants, nodes)


def _id(kind: Any, node: Any, key: Fast) -> Fast | None:
    """`$id('items', key)`: a text key found as written answers at once; anything else (not found,
    another case, placeholders, not text) goes through `fn_id` as before."""
    if type(kind) is not str or not kind:
        return None
    namespace: dict[str, Any] = {"SLOW": SLOW, "RUN": RUN, "fn_id": fn_id, "kind": kind, "key": key}
    lines = ["def ident(data, variables):"]
    inline = _field_code(node, namespace, "k")
    lines.extend(inline if inline is not None else ["    k = key(data, variables)", "    if k is SLOW: return SLOW"])
    lines += [
        "    found = RUN.get().context.get(kind)",
        "    if type(k) is str and type(found) is dict:",
        "        value = found.get(k)",
        "        if type(value) is str and value: return value",
        "    result = fn_id(kind, k)",
        "    return SLOW if isinstance(result, list) else result",
    ]
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from the fixed template above
    ident: Fast = namespace["ident"]
    return ident


def _table(name: Any, key: Any, fallback: tuple[Any, ...], functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    """`$table('name', key-or-[keys], fallback?)` with literal name and fallback: the keys are
    evaluated like `[...]` and looked up without building the call's arguments."""
    if type(name) is not str or not name:
        return None
    if getattr(key, "type", None) == "unary" and key.value == "[" and _plain(key):
        items = [_fast(e, functions) for e in key.expressions or []]
    else:
        items = [_fast(key, functions)]
        if getattr(key, "type", None) not in ("path", "string"):
            return None  # other single keys may answer a list: the generic call handles them
    if any(i is None for i in items):
        return None
    array = len(items) != 1 or getattr(key, "type", None) == "unary"
    key_nodes = (key.expressions or []) if array else [key]
    namespace: dict[str, Any] = {
        "SLOW": SLOW,
        "isinstance": isinstance,
        "list": list,
        "dict": dict,
        "str": str,
        "text": _text,
        "lookup": table_lookup,
        "name": name,
        "fallback": fallback,
    }
    lines = ["def table(data, variables):", "    candidates = []"]
    for position, (item, item_node) in enumerate(zip(items, key_nodes, strict=True)):
        var = f"k{position}"
        inline = _field_code(item_node, namespace, var)
        if inline is not None:
            lines.extend(inline)
        else:
            namespace[f"f{position}"] = item
            lines.append(f"    {var} = f{position}(data, variables)")
            lines.append(f"    if {var} is SLOW: return SLOW")
        if array:  # `[...]`: an element that is a list or an object is for the engine
            lines.append(f"    if type({var}) is not str and isinstance({var}, (list, dict)): return SLOW")
        lines.append(f"    if {var} is not None:")
        lines.append(f"        if type({var}) is not str:")
        if not array:
            lines.append(f"            if isinstance({var}, list): return SLOW")
        lines.append(f"            {var} = text({var})")
        lines.append(f"        if {var}: candidates.append({var})")
    lines.append("    result = lookup(name, candidates, fallback)")
    lines.append("    return result if type(result) is str or not isinstance(result, list) else SLOW")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from the fixed template above
    table: Fast = namespace["table"]
    return table


def field_code(
    node: Any,
    namespace: dict[str, Any],
    var: str,
    *,
    slow: str = "return SLOW",
    indent: str = "    ",
    key: str | None = None,
) -> list[str] | None:
    """For a one-step path (`sku`): lines setting `var` exactly as `_one_step` answers, inline
    (running `slow` where it would answer SLOW); None for any other node. The field name is bound
    in `namespace` as `n_<key>` (default: `n_<var>`), so `key` must be unique per function."""
    steps = getattr(node, "steps", None) if getattr(node, "type", None) == "path" else None
    if not steps or len(steps) != 1 or steps[0].type != "name" or not _plain(node) or not _plain(steps[0]):
        return None
    key = key or var
    namespace[f"n_{key}"] = str(steps[0].value)
    namespace["ABSENT"] = _ABSENT
    namespace["SLOW"] = SLOW
    lines = [
        "if type(data) is dict:",
        f"    {var} = data.get(n_{key}, ABSENT)",
        f"    if {var} is ABSENT: {var} = None",
        f"    elif {var} is None or type({var}) is list: {slow}",
        f"elif data is None: {var} = None",
        f"else: {slow}",
    ]
    return [indent + line for line in lines]


_field_code = field_code


def _call(
    function: Callable[..., Any], compiled: tuple[Fast, ...], constants: list[tuple[bool, Any]], nodes: list[Any]
) -> Fast:
    """A call with its literal arguments bound and the others evaluated in order (generated once
    per expression, so each evaluation is one flat Python function)."""
    namespace: dict[str, Any] = {"SLOW": SLOW, "function": function}
    lines = ["def call(data, variables):"]
    names = []
    for position, (arg, (literal, value)) in enumerate(zip(compiled, constants, strict=True)):
        if literal:
            namespace[f"c{position}"] = value
            names.append(f"c{position}")
            continue
        names.append(f"a{position}")
        inline = _field_code(nodes[position], namespace, f"a{position}")
        if inline is not None:
            lines.extend(inline)
            continue
        namespace[f"f{position}"] = arg
        lines.append(f"    a{position} = f{position}(data, variables)")
        lines.append(f"    if a{position} is SLOW: return SLOW")
    lines.append(f"    result = function({', '.join(names)})")
    if function in _TEXT_RESULT:
        lines.append("    return result")
    else:
        lines.append("    return result if type(result) is str or not isinstance(result, list) else SLOW")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from the fixed template above
    call: Fast = namespace["call"]
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
    if op == "&":
        return _concat(node, functions)
    left, right = _fast(node.lhs, functions), _fast(node.rhs, functions)
    if left is None or right is None:
        return None
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


def _same(a: Any, b: Any) -> bool:
    """Structural equality of two nodes of the fast subset (JSONata's `a ?? b` copies `a`)."""
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return (
            isinstance(a, list | tuple)
            and isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    if not isinstance(a, Parser.Symbol) or not isinstance(b, Parser.Symbol):
        return a is None and b is None
    if not _plain(a) or not _plain(b):
        return False
    if type(a.value) is not type(b.value) or a.value != b.value or getattr(a, "type", None) != b.type:
        return False
    return all(
        _same(getattr(a, attr, None), getattr(b, attr, None))
        for attr in ("steps", "procedure", "arguments", "lhs", "rhs", "condition", "then", "_else", "expressions")
    )


def _default(node: Any, functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    """`a ?? b` (JSONata: `$exists(a) ? a : b`) evaluating `a` once."""
    test = node.condition
    if (
        getattr(test, "type", None) != "function"
        or not _plain(test)
        or getattr(test.procedure, "type", None) != "variable"
        or test.procedure.value != "exists"
        or len(test.arguments or []) != 1
        or getattr(node, "_else", None) is None
        or not _same(test.arguments[0], node.then)
    ):
        return None
    first, otherwise = _fast(node.then, functions), _fast(node._else, functions)
    if first is None or otherwise is None:
        return None

    def default(data: Any, variables: Mapping[str, Any]) -> Any:
        value = first(data, variables)
        if value is None:
            return otherwise(data, variables)
        return value  # SLOW passes through

    return default


def _operands(node: Any) -> list[Any]:
    """`a & b & c` (left-nested) as [a, b, c]."""
    if getattr(node, "type", None) == "binary" and node.value == "&" and _plain(node):
        return [*_operands(node.lhs), *_operands(node.rhs)]
    return [node]


def _concat(node: Any, functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    """A chain of `&` as one function: every operand is evaluated, then each must be text or
    undefined (else SLOW: JSONata formats numbers, booleans and objects with $string)."""
    operands = _operands(node)
    namespace: dict[str, Any] = {"SLOW": SLOW, "str": str}
    lines = ["def concat(data, variables):"]
    checks, parts = [], []
    for position, operand in enumerate(operands):
        literal, value = _constant(operand)
        if literal and type(value) is str:
            parts.append(f"c{position}")
            namespace[f"c{position}"] = value
            continue
        compiled = _fast(operand, functions)
        if compiled is None:
            return None
        inline = _field_code(operand, namespace, f"a{position}")
        if inline is not None:  # SLOW at once: the engine then evaluates (and raises) as the rest would
            lines.extend(inline)
        else:
            namespace[f"f{position}"] = compiled
            lines.append(f"    a{position} = f{position}(data, variables)")
        checks.append(f"(a{position} is not None and type(a{position}) is not str)")
        parts.append(f"(a{position} or '')")
    if checks:
        lines.append(f"    if {' or '.join(checks)}: return SLOW")
    lines.append(f"    return {' + '.join(parts)}")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from the fixed template above
    concat: Fast = namespace["concat"]
    return concat


def _condition(node: Any, functions: Mapping[str, Callable[..., Any]]) -> Fast | None:
    default = _default(node, functions)
    if default is not None:
        return default
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
