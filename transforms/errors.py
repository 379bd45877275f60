"""The datamapper's exceptions.

    KoppelError
    ├── PermanentError
    │   └── MappingError         a record could not be mapped: one `FieldProblem` per failing field,
    │                            each naming the target field, the expression and the reason; the
    │                            message names the record (source and id). Retrying cannot help.
    └── MappingSpecError         a mapping or mapping table in the config cannot be compiled; lists
                                 (path, reason) problems. `koppel config check` reports them.

`FunctionError` is raised by Koppel's transform functions inside an expression; the mapper turns it
into a `FieldProblem` whose reason is the function's own sentence.

`PASSED_THROUGH` errors (gateway.errors' `TransientError` and `PermanentError`) raised inside an
expression come from the worker's context, not from the mapping: an id resolved only when the mapping
asks for it (Exact's G/L accounts by code, `$id('gl_accounts', code)`) can find the system unavailable
or the code unknown. They leave the mapper as they are, so a transient one is retried by the job and a
permanent one keeps its own message ("G/L account '8999' does not exist in Exact Online").
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import KoppelError, PermanentError, TransientError

__all__ = ["PASSED_THROUGH", "FieldProblem", "FunctionError", "MappingError", "MappingSpecError"]

PASSED_THROUGH: tuple[type[KoppelError], ...] = (TransientError, PermanentError)
"""Errors of the worker's context raised inside an expression: re-raised as they are, not a field's problem."""


@dataclass(frozen=True)
class FieldProblem:
    field: str
    """Target field path, e.g. "SalesOrderLines[2].Item"."""
    expression: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.field} = {self.expression}" if self.expression is not None else self.field
        return f"{where}: {self.reason}"


class MappingError(PermanentError):
    """A record could not be mapped to the target payload."""

    def __init__(self, record: str, problems: list[FieldProblem], *, mapping: str = "") -> None:
        self.record = record
        self.problems = problems
        self.mapping = mapping
        head = f"{record}: cannot be mapped" + (f" with {mapping}" if mapping else "")
        super().__init__(head + "; " + "; ".join(str(p) for p in problems))

    def lines(self) -> list[str]:
        """One line per problem, for a terminal."""
        return [str(p) for p in self.problems]


class MappingSpecError(KoppelError):
    """A mapping or table definition is invalid; `problems` holds (path, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {reason}" if path else reason for path, reason in problems))


class FunctionError(KoppelError):
    """A transform function refused its arguments; the message is a sentence for the user."""
