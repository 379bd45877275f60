"""The outage tracker (workers/outage.py): one line when Redis goes, one when it is back, the callbacks run
once when it is back, and a backoff that grows with the outage."""

from __future__ import annotations

import logging

import redis

from workers.outage import BACKOFF_CAP, Outage


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends_and_the_callbacks_run_once(caplog):
    outage = Outage("worker")
    back: list[str] = []
    outage.on_back.append(lambda: back.append("rescheduled"))
    with caplog.at_level(logging.DEBUG, logger="koppel.worker"):
        outage.ok()  # nothing to end
        for where in ("the inbox pump", "the work loop", "the inbox pump"):
            outage.failed(redis.ConnectionError("Connection refused"), where)
        assert outage.down and outage.ended_within(0)
        outage.ok()
        outage.ok()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("worker: Redis is unreachable (ConnectionError in the inbox pump)")
    assert lines[1].startswith("worker: Redis is back after")
    assert back == ["rescheduled"]
    assert not outage.down and outage.ended_within(60) and not outage.ended_within(0)


def test_a_failing_callback_is_one_line_and_does_not_stop_the_others(caplog):
    outage = Outage("worker")
    back: list[str] = []

    def broken() -> None:
        raise redis.ConnectionError("gone again")

    outage.on_back += [broken, lambda: back.append("second")]
    outage.failed(redis.TimeoutError("slow"))
    with caplog.at_level(logging.WARNING, logger="koppel.worker"):
        outage.ok()
    assert back == ["second"]
    assert any("broken failed (ConnectionError)" in record.getMessage() for record in caplog.records)
    assert not any(record.exc_info for record in caplog.records)


def test_the_wait_grows_with_the_outage_up_to_its_cap():
    slept: list[float] = []
    clock = iter([100.0, 100.0, 104.0, 160.0])
    # The outage's own clock and sleep: patching the time module would reach other tests' threads.
    outage = Outage("worker", clock=lambda: next(clock), sleep=slept.append)
    outage.failed(redis.ConnectionError("refused"))  # at 100 s
    outage.wait()  # 0 s into the outage
    outage.wait()  # 4 s
    outage.wait()  # 60 s
    assert slept == [0.25, 2.0, BACKOFF_CAP]
