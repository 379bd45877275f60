"""An integration's mappings: its overrides laid over the shipped defaults, compiled and checked.

In the config file (kept in git):

    [[integrations]]
    id = "shop-to-exact"
    ...
    [integrations.settings]
    document_type = "sales_invoice"      # which default document the orders mapping starts from
    default_debtor = "1000"              # optional: every order to this one target customer

    [integrations.mappings.orders.exactonline]          # flow -> target system kind -> fields
    Description = "'Shop ' & number"
    SalesInvoiceLines.products.Description = "$left(sku & ' ' & name, 60)"

    [integrations.tables.vat_codes]
    default = "2"
    [integrations.tables.vat_codes.entries]
    "21" = "2"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import FLOWS, Integration
from transforms.datamapper import CompiledMapping, compile_mapping
from transforms.errors import MappingSpecError
from transforms.expressions import Expression, ExpressionError
from transforms.functions import FUNCTIONS
from transforms.registry import DefaultMapping, catalogue, default_mapping, documents
from transforms.spec import GroupSpec, Problems, merge
from transforms.tables import MappingTable, parse_tables

__all__ = ["EffectiveMapping", "build_mapping", "effective_mapping", "update_switches", "validate_integration"]

_STRING_SETTINGS = (
    "default_debtor",
    "default_customer",
    "journal",
    "shipping_item",
    "fee_item",
    "discount_item",
    "local_currency",
    "shipping_line_type",
    "fee_line_type",
)


@dataclass(frozen=True)
class EffectiveMapping:
    """The default a flow starts from, the user's override (raw), and the merged result."""

    default: DefaultMapping
    override: Mapping[str, Any]
    spec: GroupSpec

    @property
    def name(self) -> str:
        return self.default.label


def targets_for(flow: str) -> list[str]:
    return sorted(t for f, t in catalogue() if f == flow)


def _document(integration: Integration, flow: str, target: str) -> str | None:
    chosen = integration.settings.get("document_type")
    if flow == "orders" and isinstance(chosen, str) and chosen in documents(flow, target):
        return chosen
    return None


def effective_mapping(integration: Integration, flow: str, target: str) -> EffectiveMapping:
    """The mapping an integration uses for flow -> target; raises MappingSpecError."""
    default = default_mapping(flow, target, _document(integration, flow, target))
    if default is None:
        raise MappingSpecError([("", f"Koppel has no {flow} mapping for {target}")])
    raw = integration.mappings.get(flow, {})
    override = raw.get(target, {}) if isinstance(raw, Mapping) else {}
    if not isinstance(override, Mapping):
        raise MappingSpecError([(f"{flow}.{target}", "must be a table of fields")])
    problems: Problems = []
    spec = merge(default.spec, override, "", problems)
    if problems:
        raise MappingSpecError(problems)
    return EffectiveMapping(default, override, spec)


def tables_of(integration: Integration) -> dict[str, MappingTable]:
    tables, problems = parse_tables(integration.tables)
    if problems:
        raise MappingSpecError([(f"tables.{p}" if p else "tables", r) for p, r in problems])
    return tables


def build_mapping(integration: Integration, flow: str, target: str) -> CompiledMapping:
    """The integration's compiled mapping for flow -> target kind (compile once, apply many)."""
    effective = effective_mapping(integration, flow, target)
    return compile_mapping(
        effective.spec,
        tables=tables_of(integration),
        settings=integration.settings,
        name=f"{integration.id}: {effective.name}",
    )


def _check_settings(settings: Mapping[str, Any], flows: list[str], prefix: str) -> list[str]:
    problems = []
    for key in _STRING_SETTINGS:
        value = settings.get(key)
        if value is not None and not (isinstance(value, str) and value.strip()):
            problems.append(f"{prefix}.settings.{key}: must be non-empty text")
    for key in _BOOL_SETTINGS:
        value = settings.get(key)
        if value is not None and not isinstance(value, bool):
            problems.append(f"{prefix}.settings.{key}: must be true or false")
    zone = settings.get("timezone")
    if zone is not None:
        try:
            ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                f"{prefix}.settings.timezone: {str(zone)[:60]!r} is not a time zone (e.g. Europe/Amsterdam)"
            )
    status = settings.get("product_status")
    if status is not None and status not in PRODUCT_STATUSES:
        problems.append(f"{prefix}.settings.product_status: must be one of {', '.join(map(repr, PRODUCT_STATUSES))} "
                        "(new items created released, or blocked until someone releases them)")  # fmt: skip
    document = settings.get("document_type")
    if document is not None and "orders" in flows:
        known = sorted({d for t in targets_for("orders") for d in documents("orders", t)})
        if document not in known:
            problems.append(f"{prefix}.settings.document_type: must be one of {', '.join(known)}")
    return problems


PRODUCT_STATUSES = ("publish", "draft")
"""settings.product_status: whether the products flow creates items published (released) or as drafts (blocked)."""
_BOOL_SETTINGS = ("prices_include_tax", "item_price_includes_tax", "sync_unpublished_products")
UPDATE_SWITCHES = {"products": "product_update"}
"""flow → the setting whose table switches the update field groups of its mapping on or off."""


def update_switches(integration: Integration, flow: str) -> dict[str, bool]:
    """The integration's switches for the update groups of `flow` ({} when it sets none)."""
    raw = integration.settings.get(UPDATE_SWITCHES.get(flow, ""), {})
    return {str(k): bool(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _check_update_switches(
    integration: Integration, prefix: str, target_kind: str | None
) -> list[str]:
    problems = []
    for flow, key in UPDATE_SWITCHES.items():
        raw = integration.settings.get(key)
        if raw is None:
            continue
        where = f"{prefix}.settings.{key}"
        if flow not in integration.flows:
            problems.append(f"{where}: this integration does not run the {flow} flow")
            continue
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be a table of field group = true / false")
            continue
        targets = [target_kind] if target_kind is not None else targets_for(flow)
        known: list[str] = []
        for target in targets:
            mapping = default_mapping(flow, target)
            known += [g for g in (mapping.group_names if mapping else []) if g not in known]
        for name, value in raw.items():
            if name not in known:
                names = ", ".join(known) or "none (updates send every field)"
                problems.append(f"{where}.{name}: unknown field group; the groups are {names}")
            elif not isinstance(value, bool):
                problems.append(f"{where}.{name}: must be true or false")
    return problems


def _check_table_use(spec: GroupSpec, tables: Mapping[str, MappingTable], path: str) -> Problems:
    """`$table('name', key)` without a fallback on a table that is not configured: a typo or a gap."""
    problems: Problems = []
    for key, child in spec.fields.items():
        where = f"{path}.{key}" if path else key
        if isinstance(child, GroupSpec):
            problems.extend(_check_table_use(child, tables, where))
            continue
        try:
            expr = Expression(child.expr, FUNCTIONS)
        except ExpressionError:
            continue  # reported by compile
        for name, arity in expr.tables_used:
            if arity < 3 and name not in tables:
                problems.append((where, f"uses mapping table {name!r}, which is not defined under tables"))
    return problems


def validate_integration(integration: Integration, index: int, *, target_kind: str | None = None) -> list[str]:
    """Every problem with the integration's mappings, tables and mapping settings, as
    "integrations[{index}].mappings.<flow>.<target>.<field>: <reason>" lines; [] when all compile.

    `target_kind`, when known, is checked against the targets the mappings name.
    """
    prefix = f"integrations[{index}]"
    problems = _check_settings(integration.settings, list(integration.flows), prefix)
    problems += _check_update_switches(integration, prefix, target_kind)
    tables, table_problems = parse_tables(integration.tables)
    problems.extend(f"{prefix}.tables.{p}: {r}" if p else f"{prefix}.tables: {r}" for p, r in table_problems)
    if not isinstance(integration.mappings, Mapping):  # pragma: no cover - the config model guarantees a dict
        return [*problems, f"{prefix}.mappings: must be a table"]
    for flow, per_target in integration.mappings.items():
        where = f"{prefix}.mappings.{flow}"
        if flow not in FLOWS:
            problems.append(f"{where}: unknown flow; flows are {', '.join(FLOWS)}")
            continue
        if flow not in integration.flows:
            problems.append(
                f"{where}: this integration does not run the {flow} flow (flows = {list(integration.flows)})"
            )
            continue
        if not isinstance(per_target, Mapping):
            problems.append(
                f"{where}: must be a table per target system, e.g. [{where[len(prefix) + 1 :]}.exactonline]"
            )
            continue
        for target, override in per_target.items():
            here = f"{where}.{target}"
            if default_mapping(flow, target) is None:
                known = ", ".join(targets_for(flow)) or "none"
                problems.append(f"{here}: Koppel has no {flow} mapping for {target!r} (targets: {known})")
                continue
            if target_kind is not None and target != target_kind:
                problems.append(f"{here}: this integration's target is a {target_kind} system, not {target}")
                continue
            if not isinstance(override, Mapping):
                problems.append(f"{here}: must be a table of field = expression")
                continue
            try:
                effective = effective_mapping(integration, flow, target)
                compile_mapping(effective.spec, tables=tables, settings=integration.settings)
            except MappingSpecError as exc:
                problems.extend(f"{here}.{p}: {r}" if p else f"{here}: {r}" for p, r in exc.problems)
                continue
            problems.extend(f"{here}.{p}: {r}" for p, r in _check_table_use(effective.spec, tables, ""))
    return problems
