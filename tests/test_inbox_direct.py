"""The inbox pump runs a record's events itself, without an RQ job (issue #14, `[gateway] direct_events`): booked
once, its entries acknowledged with the lock's release, its outcome kept under `koppel:done:<id>`; a failure
becomes the RQ job the pump would have made, as RQ leaves a job after its first attempt (retries, the failed
registry, replay); a worker killed mid-booking leaves the entries pending, and another books nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from gateway import keys
from gateway.activity import ActivityLog
from gateway.ingest import Ingestor, make_queue, merged_into, resolve_job_id
from gateway.replay import failed_job_ids, replay
from tests import test_orders_exactonline as exact_orders
from tests.conftest import SECRETS
from tests.test_inbox_coalesce import STREAM, event, exact_calls, jobs, run_jobs
from tests.test_orders_exactonline import SKUS, Env, order
from workers import jobs as jobs_module
from workers import runtime
from workers.inbox import GROUP, InboxPump
from workers.jobs import direct_for
from workers.policy import retry_schedule

pytestmark = pytest.mark.integration

env = exact_orders.env
"""The Exact sandbox with its items, and a runtime (tests/test_orders_exactonline.py)."""


def pump(env: Env, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> InboxPump:
    monkeypatch.setattr(runtime, "_runtime", env.rt)
    return InboxPump(env.conn, "koppel", direct=direct_for(env.rt), consumer="pump-1", **kwargs)


def posts(env: Env, before: dict[str, int]) -> int:
    return exact_calls(env).get("POST salesorder/SalesOrders", 0) - before.get("POST salesorder/SalesOrders", 0)


def inbox_empty(env: Env) -> bool:
    return env.conn.xlen(STREAM) == 0 and env.conn.xpending(STREAM, GROUP)["pending"] == 0


def test_a_record_run_directly_books_once_keeps_its_outcome_and_acknowledges_its_entries(env, monkeypatch):
    created, updated = Ingestor(env.conn).store([event(7201, "order.created", order(7201)),
                                                  event(7201, "order.updated", order(7201))])  # fmt: skip
    before = exact_calls(env)
    assert pump(env, monkeypatch, result_ttl=600, failure_ttl=900).drain(timeout=10) == 2
    assert jobs(env.conn) == {} and not env.conn.exists(Job.key_for(created.job_id))  # no RQ job
    assert posts(env, before) == 1 and env.in_exact("7201") == 1
    assert inbox_empty(env)
    lines = ActivityLog(env.conn).entries("shop-to-exact")
    assert [(a.topic, a.outcome, a.job_id) for a in lines] == [
        ("order.created", "created", created.job_id), ("order.updated", "skipped", updated.job_id)]  # fmt: skip
    assert f"merged into job {created.job_id}" in lines[1].reason

    raw = env.conn.get(keys.done(created.job_id))
    assert raw is not None and 590 < env.conn.ttl(keys.done(created.job_id)) <= 600  # as a finished job's result
    record = json.loads(raw)
    assert list(record) == ["id", "status", "description", "endpoint", "topic", "resource_id", "received_at",
                            "ended_at", "worker", "result", "merged"]  # fmt: skip
    assert record["id"] == created.job_id and record["status"] == "finished"
    assert record["description"].endswith("(+1 merged: order.updated)")
    assert (record["endpoint"], record["topic"], record["resource_id"]) == ("shop", "order.created", "7201")
    assert datetime.fromisoformat(record["received_at"]) <= datetime.fromisoformat(record["ended_at"])
    assert record["worker"] == "pump-1" and record["merged"] == [updated.job_id]
    assert record["result"]["integrations"]["shop-to-exact"]["outcome"] == "created"
    assert record["result"]["merged"] == [updated.job_id]
    assert merged_into(env.conn, updated.job_id) == created.job_id
    assert resolve_job_id(env.conn, updated.job_id) == created.job_id
    assert env.conn.keys(keys.lock("*")) == []


def test_an_entry_run_already_is_acknowledged_without_a_second_run(env, monkeypatch):
    [accepted] = Ingestor(env.conn).store([event(7202, "order.created", order(7202))])
    direct = pump(env, monkeypatch)
    direct.drain(timeout=10)
    # as if its acknowledgement had been lost: the entry comes round again
    envelope = json.loads(env.conn.get(keys.done(accepted.job_id)) or b"{}")
    assert envelope["id"] == accepted.job_id
    env.conn.xadd(STREAM, {"id": accepted.job_id, "e": event(7202, "order.created", order(7202)).model_dump_json()})
    before = exact_calls(env)
    assert direct.drain(timeout=10) == 1
    assert exact_calls(env) == before and jobs(env.conn) == {} and inbox_empty(env)
    assert len(ActivityLog(env.conn).entries("shop-to-exact")) == 1


def test_a_transient_failure_becomes_the_rq_job_scheduled_for_its_first_retry_then_succeeds(env, monkeypatch):
    created, updated = Ingestor(env.conn).store([event(7203, "order.created", order(7203)),
                                                  event(7203, "order.updated", order(7203))])  # fmt: skip
    env.http.post(f"{env.live.url}/sandbox/fail", json={"status": 503, "times": 50}).raise_for_status()
    direct = pump(env, monkeypatch, retry_factory=lambda: retry_schedule(3, base=60))
    assert direct.drain(timeout=10) == 2
    assert inbox_empty(env)
    lines = ActivityLog(env.conn).entries("shop-to-exact")
    assert [(a.outcome, a.job_id) for a in lines] == [("retrying", created.job_id)]  # the merged one: when final
    queue = make_queue(env.conn, "koppel")
    job = queue.fetch_job(created.job_id)
    assert job is not None and job.get_status() == "scheduled"
    assert job.retries_left == 2  # the direct run was attempt one
    assert job.kwargs["group"][1]["id"] == updated.job_id and job.meta["endpoint"] == "shop"
    assert job.meta["last_error"]  # note_transient's, as on an RQ attempt
    scheduled = ScheduledJobRegistry(queue=queue)
    assert scheduled.get_job_ids() == [created.job_id]
    at = scheduled.get_scheduled_time(job)
    assert job.retry_intervals is not None and job.ended_at is not None
    assert at >= job.ended_at.replace(tzinfo=UTC) + timedelta(seconds=job.retry_intervals[0] - 1)  # the first delay
    assert not env.conn.exists(keys.done(created.job_id))
    assert merged_into(env.conn, updated.job_id) == created.job_id

    env.http.delete(f"{env.live.url}/sandbox/faults").raise_for_status()
    scheduled.remove(job)
    queue.enqueue_job(job)  # its retry falls due (RQ's scheduler would move it)
    run_jobs(env, monkeypatch)
    assert queue.fetch_job(created.job_id).get_status() == "finished"  # type: ignore[union-attr]
    assert env.in_exact("7203") == 1
    lines = ActivityLog(env.conn).entries("shop-to-exact")
    assert [(a.outcome, a.job_id) for a in lines] == [
        ("retrying", created.job_id), ("created", created.job_id), ("skipped", updated.job_id)]  # fmt: skip


def test_a_permanent_failure_lands_in_the_failed_registry_with_its_reason_and_replays(env, monkeypatch):
    bad = order(7204)
    bad["line_items"][0]["sku"] = "NOT-AN-ITEM"
    created, updated = Ingestor(env.conn).store([event(7204, "order.created", bad), event(7204, "order.updated", bad)])
    pump(env, monkeypatch, retry_factory=lambda: retry_schedule(3, base=60)).drain(timeout=10)
    assert inbox_empty(env)
    lines = ActivityLog(env.conn).entries("shop-to-exact")
    assert [(a.outcome, a.job_id) for a in lines] == [("failed", created.job_id), ("skipped", updated.job_id)]
    assert failed_job_ids(env.conn, env.rt.config) == [created.job_id]
    job = make_queue(env.conn, "koppel").fetch_job(created.job_id)
    assert job is not None and job.get_status() == "failed" and job.retries_left == 0
    assert "NOT-AN-ITEM" in job.meta["reason"]
    assert "PermanentError" in (job.latest_result().exc_string or "")  # type: ignore[union-attr]
    assert FailedJobRegistry(queue=make_queue(env.conn, "koppel")).get_job_ids() == [created.job_id]

    env.http.post(f"{env.live.url}/sandbox/seed/items", json={"skus": [*SKUS, "NOT-AN-ITEM"]}).raise_for_status()
    result = replay(env.conn, env.rt.config, [updated.job_id])  # by the merged id
    assert result.requeued == [created.job_id]
    run_jobs(env, monkeypatch)
    assert env.in_exact("7204") == 1
    assert [a.outcome for a in ActivityLog(env.conn).entries("shop-to-exact")][2:] == ["created", "skipped"]


def test_an_unexpected_exception_fails_the_job_with_its_traceback_when_no_retry_is_left(env, monkeypatch, caplog):
    [accepted] = Ingestor(env.conn).store([event(7205, "order.created", order(7205))])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(jobs_module, "run_event", broken)
    pump(env, monkeypatch).drain(timeout=10)  # no retry schedule: the first attempt is the last
    job = make_queue(env.conn, "koppel").fetch_job(accepted.job_id)
    assert job is not None and job.get_status() == "failed"
    exc = job.latest_result().exc_string or ""  # type: ignore[union-attr]
    assert "Traceback" in exc and "ZeroDivisionError: a bug" in exc
    [line] = ActivityLog(env.conn).entries("shop-to-exact")
    assert (line.outcome, line.job_id) == ("error", accepted.job_id)
    assert "ZeroDivisionError" in caplog.text  # logged with its traceback, as RQ's worker logs it
    assert inbox_empty(env)


def test_direct_events_off_makes_every_event_an_rq_job_as_before(env, monkeypatch):
    created, _updated = Ingestor(env.conn).store([event(7206, "order.created", order(7206)),
                                                  event(7206, "order.updated", order(7206))])  # fmt: skip
    direct = pump(env, monkeypatch)
    gateway = env.rt.config.gateway.model_copy(update={"direct_events": False})
    monkeypatch.setattr(env.rt, "config", env.rt.config.model_copy(update={"gateway": gateway}))  # as a live reload
    direct.drain(timeout=10)
    assert list(jobs(env.conn)) == [created.job_id] and not env.conn.exists(keys.done(created.job_id))
    assert env.in_exact("7206") == 0
    run_jobs(env, monkeypatch)
    assert env.in_exact("7206") == 1


def test_a_stopping_pump_leaves_what_it_did_not_start_pending_and_runs_it_later(env, monkeypatch):
    Ingestor(env.conn).store([event(7207, "order.created", order(7207))])
    direct = pump(env, monkeypatch)
    direct.stop = stopped = threading.Event()
    stopped.set()
    assert direct.pump_once(block_ms=None) == 0
    assert env.conn.xpending(STREAM, GROUP)["pending"] == 1 and env.in_exact("7207") == 0
    stopped.clear()
    assert direct.drain(timeout=10) == 1
    assert env.in_exact("7207") == 1 and inbox_empty(env)


# -- a real `koppel worker` killed mid-booking -------------------------------------------------------------


def start_worker(tmp_path: Path, redis_url: str, exact_url: str, log: Path) -> subprocess.Popen[bytes]:
    config = tmp_path / "koppel.toml"
    config.write_text(
        '[gateway]\nworker_heartbeat_seconds = 1\n\n'
        '[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n\n'
        f'[[systems]]\nid = "exact"\nkind = "exactonline"\nbase_url = "{exact_url}"\n'
        'credentials = { client_secret = "env:EXACT_CLIENT_SECRET" }\nsettings = { client_id = "koppel-sandbox" }\n\n'
        '[[integrations]]\nid = "shop-to-exact"\nsource = "shop"\ntarget = "exact"\nflows = ["orders"]\n'
    )  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
            env={**os.environ, **SECRETS, "WC_SECRET": "s", "EXACT_CLIENT_SECRET": "sandbox-secret",
                 "REDIS_URL": redis_url, "KOPPEL_LOG_LEVEL": "WARNING"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each worker still running (a warm stop), SIGKILL one that does not stop within 30 s."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def wait_for(what: str, done: Any, workers: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + 40
    while not done():
        for worker in workers:
            assert worker.poll() is None, f"a worker exited while waiting for {what}: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} within 40 s: {log.read_text()[-2000:]}"
        time.sleep(0.05)


def test_a_worker_killed_mid_booking_leaves_its_entries_to_another_and_the_order_is_booked_once(
    env, tmp_path, redis_url
):
    log = tmp_path / "workers.log"
    # every Exact call slow: the booking is under way (marked in flight, its POST sent) when its worker is killed
    env.http.post(f"{env.live.url}/sandbox/fail", json={"delay": 0.4, "times": 200}).raise_for_status()
    workers = [start_worker(tmp_path, redis_url, env.live.url, log) for _ in range(2)]
    try:
        [accepted] = Ingestor(env.conn).store([event(7208, "order.created", order(7208))])
        wait_for("the booking in flight", lambda: env.conn.hlen(keys.in_flight("shop-to-exact", "orders")) > 0,
                 workers, log)  # fmt: skip
        [pending] = env.conn.xpending_range(STREAM, GROUP, "-", "+", 10)
        consumer = pending["consumer"].decode()
        victim = next(w for w in workers if f":{w.pid}:" in consumer)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivor = next(w for w in workers if w is not victim)
        wait_for("the record finished by the other worker", lambda: env.conn.exists(keys.done(accepted.job_id)),
                 [survivor], log)  # fmt: skip
        record = json.loads(env.conn.get(keys.done(accepted.job_id)) or b"{}")
        assert record["worker"] != consumer
        assert env.in_exact("7208") == 1, "the order was booked twice"
        assert inbox_empty(env)
        assert make_queue(env.conn, "koppel").fetch_job(accepted.job_id) is None  # never an RQ job
        assert env.conn.hlen(keys.in_flight("shop-to-exact", "orders")) == 0
    finally:
        stop_workers(workers)


def test_a_worker_told_to_stop_finishes_the_record_it_runs_and_leaves_the_rest_pending(env, tmp_path, redis_url):
    log = tmp_path / "workers.log"
    env.http.post(f"{env.live.url}/sandbox/fail", json={"delay": 0.4, "times": 200}).raise_for_status()
    worker = start_worker(tmp_path, redis_url, env.live.url, log)
    try:
        running, waiting = Ingestor(env.conn).store([event(7209, "order.created", order(7209)),
                                                     event(7210, "order.created", order(7210))])  # fmt: skip
        wait_for("the booking in flight", lambda: env.conn.hlen(keys.in_flight("shop-to-exact", "orders")) > 0,
                 [worker], log)  # fmt: skip
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert env.conn.exists(keys.done(running.job_id)) and env.in_exact("7209") == 1  # finished, not cut off
        assert env.in_exact("7210") == 0 and not env.conn.exists(keys.done(waiting.job_id))
        [(_, fields)] = env.conn.xrange(STREAM)  # left in the inbox for the next worker
        assert fields[b"id"].decode() == waiting.job_id
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_two_workers_on_one_records_events_at_once_book_it_once(env, tmp_path, redis_url):
    log = tmp_path / "workers.log"
    env.http.post(f"{env.live.url}/sandbox/fail", json={"delay": 1.0, "times": 200}).raise_for_status()
    workers = [start_worker(tmp_path, redis_url, env.live.url, log) for _ in range(2)]
    try:
        [created] = Ingestor(env.conn).store([event(7211, "order.created", order(7211))])
        wait_for("the booking in flight", lambda: env.conn.hlen(keys.in_flight("shop-to-exact", "orders")) > 0,
                 workers, log)  # fmt: skip
        # the busy worker's pump is running the record: the other worker's reads this, and waits for the lock
        [updated] = Ingestor(env.conn).store([event(7211, "order.updated", order(7211))])
        wait_for("both events run", lambda: env.conn.exists(keys.done(created.job_id), keys.done(updated.job_id)) == 2,
                 workers, log)  # fmt: skip
        first, second = (json.loads(env.conn.get(keys.done(i)) or b"{}") for i in (created.job_id, updated.job_id))
        assert first["worker"] != second["worker"]
        assert env.in_exact("7211") == 1
        lines = ActivityLog(env.conn).entries("shop-to-exact")
        assert [(a.topic, a.outcome) for a in lines] == [("order.created", "created"), ("order.updated", "skipped")]
        assert second["result"]["integrations"]["shop-to-exact"]["outcome"] == "skipped"
        assert inbox_empty(env)
    finally:
        stop_workers(workers)
