"""The default mappings Koppel ships: `transforms/defaults/<flow>/<target>/<document>.toml`.

Each file is one document type a target accepts for a flow (Exact Online orders: sales_order,
sales_invoice, direct_invoice, sales_entry). Its header says what it builds:

    description = "Exact Online sales order (salesorder/SalesOrders)"
    resource = "salesorder/SalesOrders"       # where the connector posts it
    record = "order"                          # the canonical record it reads
    default = true                            # the document used when settings do not choose
    [fields]                                  # the mapping itself (see transforms.spec)
    [update_groups]                           # optional: field groups an update may overwrite
    description = ["Description"]
    [update_defaults]                         # optional: groups an update leaves alone by default
    image = false

A mapping with `update_groups` writes every field on create and, on update, only the groups the
integration's `settings.<record>_update` switches on (else `update_defaults`, else on). Fields in no
group form the group "other".
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from transforms.errors import MappingSpecError
from transforms.spec import GroupSpec, Problems, parse_group

__all__ = ["OTHER_GROUP", "DefaultMapping", "add_default", "catalogue", "default_mapping", "documents"]

OTHER_GROUP = "other"
"""The update group of the fields a mapping puts in no group (e.g. a field a user's override adds)."""


@dataclass(frozen=True)
class DefaultMapping:
    flow: str
    target: str
    document: str
    description: str
    resource: str
    record: str
    is_default: bool
    spec: GroupSpec
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Update field groups: name → the top-level fields it holds (empty: updates send every field)."""
    update_defaults: Mapping[str, bool] = field(default_factory=dict)
    """Whether an update sends a group when the integration does not say; groups not listed: true."""

    def update_fields(self, switches: Mapping[str, Any], fields: Iterable[str]) -> set[str]:
        """Which of `fields` an update sends under `switches` (group → bool; "other": fields in no group)."""
        if not self.groups:
            return set(fields)
        grouped = {name: group for group, names in self.groups.items() for name in names}
        out = set()
        for name in fields:
            group = grouped.get(name, OTHER_GROUP)
            if bool(switches.get(group, self.update_defaults.get(group, True))):
                out.add(name)
        return out

    @property
    def group_names(self) -> list[str]:
        return [*self.groups, OTHER_GROUP] if self.groups else []

    @property
    def label(self) -> str:
        return f"{self.flow} -> {self.target} ({self.document})"


def _load(flow: str, target: str, document: str, text: str) -> DefaultMapping:
    raw: dict[str, Any] = tomllib.loads(text)
    problems: Problems = []
    spec = parse_group(raw.get("fields", {}), "", problems)
    groups = {str(k): tuple(str(n) for n in v) for k, v in raw.get("update_groups", {}).items()}
    defaults = {str(k): bool(v) for k, v in raw.get("update_defaults", {}).items()}
    for name in defaults:
        if name not in groups and name != OTHER_GROUP:
            problems.append((f"update_defaults.{name}", "is not one of the update_groups"))
    if problems:  # pragma: no cover - the shipped defaults are tested
        raise MappingSpecError([(f"defaults/{flow}/{target}/{document}.toml: {p}", r) for p, r in problems])
    return DefaultMapping(
        flow=flow,
        target=target,
        document=document,
        description=str(raw.get("description", "")),
        resource=str(raw.get("resource", "")),
        record=str(raw.get("record", "")),
        is_default=bool(raw.get("default", False)),
        spec=spec,
        groups=groups,
        update_defaults=defaults,
    )


@cache
def catalogue() -> dict[tuple[str, str], dict[str, DefaultMapping]]:
    """(flow, target kind) -> document -> default mapping, read once from the package."""
    out: dict[tuple[str, str], dict[str, DefaultMapping]] = {}
    root = resources.files("transforms") / "defaults"
    for flow_dir in sorted(root.iterdir(), key=lambda p: p.name):
        if not flow_dir.is_dir():
            continue
        for target_dir in sorted(flow_dir.iterdir(), key=lambda p: p.name):
            if not target_dir.is_dir():
                continue
            for file in sorted(target_dir.iterdir(), key=lambda p: p.name):
                if file.name.endswith(".toml"):
                    document = file.name.removesuffix(".toml")
                    mapping = _load(flow_dir.name, target_dir.name, document, file.read_text(encoding="utf-8"))
                    out.setdefault((flow_dir.name, target_dir.name), {})[document] = mapping
    return out


def add_default(flow: str, target: str, document: str, text: str) -> DefaultMapping:
    """Add a default mapping shipped outside this package (a connector's own, `Connector.mappings`).
    A shipped file of the same flow, target and document is not replaced."""
    mapping = _load(flow, target, document, text)
    return catalogue().setdefault((flow, target), {}).setdefault(document, mapping)


def documents(flow: str, target: str) -> list[str]:
    """The document types shipped for flow -> target, the default first."""
    docs = catalogue().get((flow, target), {})
    return sorted(docs, key=lambda d: (not docs[d].is_default, d))


def default_mapping(flow: str, target: str, document: str | None = None) -> DefaultMapping | None:
    """The shipped mapping for flow -> target (the default document unless one is named)."""
    docs = catalogue().get((flow, target))
    if not docs:
        return None
    if document is None:
        return docs[documents(flow, target)[0]]
    return docs.get(document)
