"""The four flows — orders, customers, products, stock — each written once over `Source` and `Target`.

A flow takes one event for one integration (`Work`), reads and normalises the record through the
source, applies the SPEC's rules and the integration's mapping, and writes through the target. It
names no system: what differs between systems is the connectors' business (connectors/contract.py).
It returns a `FlowResult` (its activity log entry, no payload data), or raises `TransientError` to be
retried or `PermanentError` to fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from pydantic import BaseModel

from connectors.contract import Canonical, FlowResult, Source, Target
from gateway import snapshots
from gateway.config import Integration
from gateway.envelope import Envelope
from transforms import CompiledMapping, build_mapping
from transforms.inputs import mapping_input
from transforms.integration import tables_of
from transforms.tables import MappingTable
from workers.runtime import Runtime

__all__ = ["FLOWS", "BatchFunction", "FlowResult", "Work", "batch_function", "flow_function"]


@dataclass
class Work:
    """One event for one integration: what a flow works with."""

    integration: Integration
    envelope: Envelope
    source: Source
    target: Target
    runtime: Runtime
    _record: Any = field(default=None, repr=False)
    _expanded: Any = field(default=None, repr=False)

    @property
    def settings(self) -> dict[str, Any]:
        return self.integration.settings

    @property
    def connection(self) -> redis.Redis:
        return self.runtime.connection

    @property
    def label(self) -> str:
        return f"{self.envelope.source} {self.envelope.resource} {self.envelope.resource_id or ''}".strip()

    def raw(self, flow: str) -> Any:
        """The full record behind the event (read through the source once)."""
        if self._record is None:
            self._record = self.source.read(self.envelope, flow)
            snapshots.note_record(self._record)
        return self._record

    def record(self, flow: str, *, expanded: bool = False) -> Canonical:
        """The event's record in the canonical model; `expanded`: with what booking it needs besides
        (`Source.expand`: e.g. order lines the notification lacks), read once."""
        raw = self.raw(flow)
        if expanded:
            if self._expanded is None:
                self._expanded = self.source.expand(flow, raw)
            raw = self._expanded
        return self.source.normalise(flow, raw, self.integration.settings)

    def mapping(self, flow: str) -> CompiledMapping:
        """The integration's compiled mapping for flow → the target's kind (compiled once per process)."""
        integration, kind = self.integration, self.target.kind
        return self.runtime.cached(
            f"mapping:{integration.id}:{flow}:{kind}", lambda: build_mapping(integration, flow, kind)
        )

    def mapped(self, flow: str, record: Any, context: dict[str, Any] | None = None, *, label: str) -> dict[str, Any]:
        """The integration's mapping for `flow` applied to `record` (noted in the job's payload snapshot)."""
        payload = self.mapping(flow).apply(record, context, label=label)
        if snapshots.current() is not None:  # the input, whole: a later mapping may read other fields
            given = mapping_input(record, self.settings) if isinstance(record, BaseModel) else record
            snapshots.note_mapped(flow, payload, context, given)
        return payload

    def tables(self) -> dict[str, MappingTable]:
        """The integration's mapping tables (`[integrations.tables.*]`), parsed once per process."""
        return self.runtime.cached(f"tables:{self.integration.id}", lambda: tables_of(self.integration))


FlowFunction = Callable[[Work], FlowResult]


def _flows() -> dict[str, FlowFunction]:
    from workers.flows import customers, orders, products, stock

    return {"orders": orders.run, "customers": customers.run, "products": products.run, "stock": stock.run}


FLOWS: dict[str, FlowFunction] = {}


def flow_function(flow: str) -> FlowFunction:
    if not FLOWS:
        FLOWS.update(_flows())
    return FLOWS[flow]


BatchFunction = Callable[[list[Work]], list[FlowResult | Exception]]
"""Several records' events of one integration and flow, written together (a target's batch endpoint): one
result per work, in input order; an Exception for a record the batch could not write (it then runs again
alone, as its own job)."""


def batch_function(flow: str, target_kind: str) -> BatchFunction | None:
    """The batch write of `flow` into targets of `target_kind`, or None when records go one by one. The inbox
    pump makes one job of the waiting events of several records of one integration and flow only when this
    is not None (workers/inbox.py, `workers.jobs.process_batch`), taking every record's lock (sorted)."""
    return None
