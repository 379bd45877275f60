"""The receiver's plain-int counters expose exactly what prometheus_client's Counter does."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, generate_latest

from gateway.metrics import Counts


def exposition(registry: CollectorRegistry) -> str:
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 <time>", generate_latest(registry).decode())


def test_counts_render_like_a_prometheus_counter():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counts = Counts("koppel_webhooks_rejected", "Webhook requests rejected", ["endpoint", "reason"])
    ours.register(counts)
    counter = Counter("koppel_webhooks_rejected", "Webhook requests rejected", ["endpoint", "reason"], registry=theirs)
    for labels, amount in [(("shop", "bad_signature"), 1), (("unknown", "unknown_endpoint"), 3), (("shop", "x"), 0)]:
        counts.labels(*labels).inc(amount)
        counter.labels(*labels).inc(amount)
    counts.labels("shop", "bad_signature").inc()
    counter.labels("shop", "bad_signature").inc()
    assert exposition(ours) == exposition(theirs)
    assert 'koppel_webhooks_rejected_total{endpoint="shop",reason="bad_signature"} 2.0' in exposition(ours)
