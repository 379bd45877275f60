"""Prometheus metrics of the receiver, one registry per app (so tests and apps don't share state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _Depth(Collector):
    def __init__(self, name: str, documentation: str, depth: Callable[[], dict[str, int]]) -> None:
        self._name = name
        self._documentation = documentation
        self._depth = depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=["queue"])
        try:
            for queue, depth in self._depth().items():
                family.add_metric([queue], depth)
        except Exception:  # noqa: S110 - Redis down: the gauge is simply absent, /readyz says why
            pass
        yield family


@dataclass(frozen=True, slots=True)
class EndpointCounters:
    """One endpoint's counter children, looked up once (`.labels()` per request costs a lock and a dict)."""

    received: Any
    queued: Any
    duplicates: Any


class Metrics:
    def __init__(
        self, queue_depth: Callable[[], dict[str, int]], inbox_depth: Callable[[], dict[str, int]] | None = None
    ) -> None:
        self._endpoints: dict[tuple[str, str], EndpointCounters] = {}
        self.registry = CollectorRegistry()
        self.received = Counter(
            "koppel_webhooks_received",
            "Webhook requests received",
            ["endpoint", "kind"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "koppel_webhooks_rejected",
            "Webhook requests rejected",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.queued = Counter(
            "koppel_events_queued", "Events stored and queued as jobs", ["endpoint"], registry=self.registry
        )
        self.duplicates = Counter(
            "koppel_events_duplicate",
            "Deliveries acknowledged as duplicates, no job",
            ["endpoint"],
            registry=self.registry,
        )
        self.registry.register(_Depth("koppel_queue_depth", "Jobs waiting in the queue", queue_depth))
        if inbox_depth is not None:
            self.registry.register(
                _Depth("koppel_inbox_depth", "Accepted events not yet made jobs (inbox stream length)", inbox_depth)
            )

    def of(self, endpoint: str, kind: str) -> EndpointCounters:
        counters = self._endpoints.get((endpoint, kind))
        if counters is None:
            counters = EndpointCounters(
                self.received.labels(endpoint, kind), self.queued.labels(endpoint), self.duplicates.labels(endpoint)
            )
            self._endpoints[(endpoint, kind)] = counters
        return counters

    def render(self) -> bytes:
        return generate_latest(self.registry)
