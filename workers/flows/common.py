"""Pieces more than one flow uses: the per-process mapping and tables, and the order ledger."""

from __future__ import annotations

import redis

from gateway.config import Integration
from transforms import CompiledMapping, build_mapping
from transforms.integration import tables_of
from transforms.tables import MappingTable
from workers.runtime import Runtime


def cached_mapping(rt: Runtime, integration: Integration, flow: str, target: str) -> CompiledMapping:
    """The integration's compiled mapping for flow -> target kind, compiled once per process."""
    return rt.cached(f"mapping:{integration.id}:{flow}:{target}", lambda: build_mapping(integration, flow, target))


def cached_tables(rt: Runtime, integration: Integration) -> dict[str, MappingTable]:
    """The integration's mapping tables (`[integrations.tables.*]`), parsed once per process."""
    return rt.cached(f"tables:{integration.id}", lambda: tables_of(integration))


class Ledger:
    """What Koppel created in Exact for an integration, and which creations are in flight."""

    def __init__(self, connection: redis.Redis, integration_id: str) -> None:
        self.connection = connection
        self.key = f"koppel:ledger:{integration_id}:orders"
        self.flight = f"koppel:inflight:{integration_id}:orders"

    def created(self, number: str) -> str | None:
        value = self.connection.hget(self.key, number)
        return value.decode() if value else None

    def in_flight(self, number: str) -> bool:
        return bool(self.connection.hexists(self.flight, number))

    def lookup(self, number: str) -> tuple[str | None, bool]:
        """`created` and `in_flight` in one round trip: (Exact id or None, in flight)."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hget(self.key, number)
            pipe.hexists(self.flight, number)
            value, flying = pipe.execute()
        return (value.decode() if value else None), bool(flying)

    def take_off(self, number: str) -> None:
        self.connection.hset(self.flight, number, "1")

    def land(self, number: str, exact_id: str) -> None:
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, number, exact_id)
            pipe.hdel(self.flight, number)
            pipe.execute()


__all__ = ["Ledger", "cached_mapping", "cached_tables"]
