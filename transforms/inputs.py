"""What a mapping expression sees: the canonical record as JSON-like data, plus derived values.

- Fields that are None are left out, so that `field ?? 'fallback'` and `field ?: 'fallback'`
  work as JSONata users expect (JSONata treats a JSON null as present).
- Decimals (money, quantities, rates) are exact decimal text: "10.19", never a float.
- Timestamps are ISO 8601 text in UTC ("2026-03-14T13:02:11Z"); dates "YYYY-MM-DD".
- Orders and customers get `debtor` (see `transforms.debtor`): kind company / person / default,
  name, code, email, is_company and, for a company, its contact person.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from gateway.model import Customer, Order
from transforms.debtor import decide_debtor

__all__ = ["mapping_input"]


def mapping_input(
    record: BaseModel, settings: Mapping[str, Any] | None = None, *, names: AbstractSet[str] | None = None
) -> dict[str, Any]:
    """The mapping input for a canonical record under the integration's settings.

    With `names` (every field name a compiled mapping's expressions can read, at any depth), only
    the record's top-level fields in it are built (each one whole), and `debtor` only if named:
    what the mapping reads is exactly what the full input holds."""
    if names is None:
        data = record.model_dump(mode="json", exclude_none=True)
    else:
        data = record.model_dump(mode="json", exclude_none=True, include=_include(type(record), frozenset(names)))
    if names is not None and "debtor" not in names:
        return data
    if isinstance(record, Order):
        data["debtor"] = decide_debtor(record.customer, settings, flow="orders").as_input()
    elif isinstance(record, Customer):
        data["debtor"] = decide_debtor(record, settings, flow="customers").as_input()
    return data


@lru_cache(maxsize=256)
def _include(model: type[BaseModel], names: frozenset[str]) -> set[str]:
    """The model's fields among `names`, as a set: pydantic reads a set faster than a frozenset."""
    return (set(model.model_fields) | set(model.model_computed_fields)) & names
