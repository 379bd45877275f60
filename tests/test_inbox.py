"""The inbox: the gateway stores events in a stream, the workers' pumps make exactly one RQ job of each."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from gateway.envelope import Envelope, Event
from gateway.ingest import Draft, Ingestor, inbox_key
from gateway.redisserver import EmbeddedRedis, free_port
from workers.inbox import GROUP, InboxPump
from workers.policy import retry_schedule

pytestmark = pytest.mark.integration

STREAM = inbox_key("koppel")


def envelope(n: int, key: str | None = None) -> Envelope:
    event = Event("order.created", "order", str(n), key or f"delivery-{n}", {"id": n, "name": "Jörg"})
    return Envelope.wrap(event, source="woocommerce", endpoint="shop")


def jobs(conn: redis.Redis) -> dict[str, dict]:
    queue = Queue("koppel", connection=conn, serializer=JSONSerializer)
    return {job.id: job for job in queue.get_jobs()}


def test_draft_wrap_is_exactly_the_envelope_the_worker_validates():
    event = Event(
        "order.created", "order", "7", "k-7", {"id": 7, "total": "1.50", "lines": [{"q": 2}]}, None, {"a": "b"}
    )
    now = datetime.now(UTC)
    draft = Draft.wrap(event, source="woocommerce", endpoint="shop", received_at=now)
    reference = Envelope.wrap(event, source="woocommerce", endpoint="shop", received_at=now)
    assert Envelope.model_validate_json(draft.json) == reference
    assert draft == Draft(reference.endpoint, Draft.of(reference).dedupe_key, draft.json)
    text = b'{"id": 7, "total": "1.50", "lines": [{"q": 2}]}'  # as received: embedded, not encoded again
    embedded = Draft.wrap(replace(event, payload_json=text), source="woocommerce", endpoint="shop", received_at=now)
    assert text in embedded.json
    assert json.loads(embedded.json) == json.loads(draft.json)
    assert (embedded.endpoint, embedded.dedupe_key) == (draft.endpoint, draft.dedupe_key)


def test_each_entry_becomes_one_job_with_its_id_and_the_retry_schedule(rconn):
    accepted = Ingestor(rconn).store([envelope(n) for n in range(5)])
    assert not any(a.duplicate for a in accepted)
    assert rconn.xlen(STREAM) == 5 and jobs(rconn) == {}  # stored, not yet jobs
    pump = InboxPump(rconn, "koppel", retry_factory=lambda: retry_schedule(3, base=60), result_ttl=60, failure_ttl=120)
    assert pump.drain(timeout=5) == 5
    made = jobs(rconn)
    assert sorted(made) == sorted(a.job_id for a in accepted)
    for n, a in enumerate(accepted):
        job = made[a.job_id]
        assert job.func_name == "workers.jobs.process_event"
        assert Envelope.model_validate(job.args[0]).resource_id == str(n)
        assert job.retries_left == 3 and len(job.retry_intervals) == 3
        assert job.meta == {"endpoint": "shop", "topic": "order.created"}
        assert (job.result_ttl, job.failure_ttl) == (60, 120)
    assert rconn.xlen(STREAM) == 0 and rconn.xpending(STREAM, GROUP)["pending"] == 0
    assert pump.drain(timeout=1) == 0


def test_duplicates_never_reach_the_inbox(rconn):
    ingestor = Ingestor(rconn)
    first, again, other = ingestor.store([envelope(1), envelope(1), envelope(2)])
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.job_id == first.job_id
    later = ingestor.store([envelope(1)])[0]
    assert later == type(later)(first.job_id, True)
    assert rconn.xlen(STREAM) == 2
    InboxPump(rconn, "koppel").drain(timeout=5)
    assert sorted(jobs(rconn)) == sorted([first.job_id, other.job_id])


def test_a_pump_crash_before_exec_leaves_entries_pending_and_another_consumer_makes_each_job_once(rconn, monkeypatch):
    accepted = Ingestor(rconn).store([envelope(n) for n in range(4)])
    crashing = InboxPump(rconn, "koppel", consumer="dies")

    def crash(pipe: object) -> None:
        raise RuntimeError("killed before EXEC")

    monkeypatch.setattr(crashing, "_execute", crash)
    with pytest.raises(RuntimeError):
        crashing.drain(timeout=1)
    assert jobs(rconn) == {}
    assert rconn.xpending(STREAM, GROUP)["pending"] == 4  # read, not acknowledged
    rescuer = InboxPump(rconn, "koppel", consumer="rescuer", claim_idle_ms=100)
    time.sleep(0.2)
    assert rescuer.drain(timeout=5) == 4
    assert sorted(jobs(rconn)) == sorted(a.job_id for a in accepted)
    assert rconn.xlen(STREAM) == 0 and rconn.xpending(STREAM, GROUP)["pending"] == 0


def test_an_entry_whose_job_exists_is_acknowledged_without_a_second_job(rconn):
    accepted = Ingestor(rconn).store([envelope(1)])
    InboxPump(rconn, "koppel").drain(timeout=5)
    job_id = accepted[0].job_id
    rconn.xadd(STREAM, {"id": job_id, "e": Draft.of(envelope(1)).json})  # as if a pump's EXEC was replayed
    assert InboxPump(rconn, "koppel").drain(timeout=5) == 1
    assert list(jobs(rconn)) == [job_id]
    assert Queue("koppel", connection=rconn).count == 1
    assert rconn.xlen(STREAM) == 0


def test_two_pumps_draining_together_make_each_job_once(rconn):
    ingestor = Ingestor(rconn)
    accepted = [
        a for start in range(0, 600, 100) for a in ingestor.store([envelope(n) for n in range(start, start + 100)])
    ]
    counts: list[int] = []

    def drain(name: str) -> None:
        counts.append(InboxPump(rconn, "koppel", consumer=name, batch=50).drain(timeout=10))

    threads = [threading.Thread(target=drain, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 600
    assert sorted(jobs(rconn)) == sorted(a.job_id for a in accepted)
    assert Queue("koppel", connection=rconn).count == 600
    assert rconn.xlen(STREAM) == 0


def test_a_redis_restart_keeps_the_entries_not_yet_pumped(tmp_path):
    server = EmbeddedRedis(data_dir=tmp_path, port=free_port())
    server.start()
    try:
        conn = redis.Redis.from_url(server.url)
        accepted = Ingestor(conn).store([envelope(n) for n in range(3)])
        conn.close()
        server.stop()
        server.start()  # same data dir and port: the AOF brings the inbox back
        conn = redis.Redis.from_url(server.url)
        assert conn.xlen(STREAM) == 3
        assert InboxPump(conn, "koppel").drain(timeout=5) == 3
        assert sorted(jobs(conn)) == sorted(a.job_id for a in accepted)
        conn.close()
    finally:
        server.stop()


def test_the_background_pump_makes_jobs_and_stops(rconn):
    thread, stop = InboxPump(rconn, "koppel", block_ms=100).start()
    try:
        accepted = Ingestor(rconn).store([envelope(1)])
        deadline = time.monotonic() + 5
        while not jobs(rconn) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(jobs(rconn)) == [accepted[0].job_id]
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
