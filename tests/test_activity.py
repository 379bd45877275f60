"""The activity log: what each integration did with each event, kept for a limited time."""

from __future__ import annotations

import time

import pytest

from gateway.activity import Activity, ActivityLog


def entry(**changes) -> Activity:
    now = time.time()
    values = dict(integration="shop-to-exact", flow="orders", topic="order.created", resource_id="41",
                  outcome="created", received_at=now - 0.25, done_at=now, number="1041", target_id="abc",
                  calls=1, job_id="j1")  # fmt: skip
    return Activity(**(values | changes))


def test_entries_come_back_in_order_with_their_fields(rconn):
    log = ActivityLog(rconn)
    first, second = entry(), entry(resource_id="42", outcome="failed", reason="SKU(s) X do not exist", calls=0)
    log.record(first)
    log.record(second)
    assert log.entries("shop-to-exact") == [first, second]
    assert log.entries("other") == []
    assert abs(second.latency - 0.25) < 1e-6


def test_entries_since_a_moment_leave_out_older_ones(rconn):
    log = ActivityLog(rconn)
    log.record(entry(resource_id="1"))
    time.sleep(0.01)
    cut = time.time()
    log.record(entry(resource_id="2"))
    assert [a.resource_id for a in log.entries("shop-to-exact", since=cut)] == ["2"]


def test_old_entries_are_trimmed_and_the_stream_expires(rconn):
    log = ActivityLog(rconn, retention=60)
    key = "koppel:activity:shop-to-exact"
    old_ms = int((time.time() - 3600) * 1000)
    for n in range(200):  # trimming is approximate: Redis drops whole nodes of old entries
        rconn.xadd(key, entry(resource_id=str(n)).fields(), id=f"{old_ms}-{n}")
    log.record(entry(resource_id="new"))
    assert len(log.entries("shop-to-exact")) < 201
    assert 0 < rconn.ttl(key) <= 60


def test_an_unknown_outcome_is_refused(rconn):
    with pytest.raises(ValueError, match="unknown activity outcome"):
        ActivityLog(rconn).record(entry(outcome="maybe"))
