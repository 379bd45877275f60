"""Prometheus metrics of the receiver, one registry per app (so tests and apps don't share state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _QueueDepth(Collector):
    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self._depth = depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("koppel_queue_depth", "Jobs waiting in the queue", labels=["queue"])
        try:
            for queue, depth in self._depth().items():
                family.add_metric([queue], depth)
        except Exception:  # noqa: S110 - Redis down: the gauge is simply absent, /readyz says why
            pass
        yield family


class Metrics:
    def __init__(self, queue_depth: Callable[[], dict[str, int]]) -> None:
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
        self.registry.register(_QueueDepth(queue_depth))

    def render(self) -> bytes:
        return generate_latest(self.registry)
