"""`koppel worker` under faults, as processes against a real Redis: it rides out Redis outages (busy and
idle) and then does the work that waited, and a job whose worker was killed mid-run is run again by another
worker (its write done once, by the ledger), not left to RQ's abandoned-job handling. And the recovery's
bound: a job whose worker died `MAX_WORKER_DEATHS` times while running it is failed, naming why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from gateway import keys
from gateway.envelope import Envelope, Event
from gateway.ingest import Ingestor, make_queue
from gateway.redisserver import EmbeddedRedis, free_port
from gateway.stack import backlog
from tests.conftest import SECRETS
from tests.worker_jobs import FLOW, HOLD, INTEGRATION, TARGET
from workers.ledger import Ledger
from workers.recovery import DEATHS, MAX_WORKER_DEATHS, recover
from workers.worker import KoppelWorker, worker_timing

pytestmark = pytest.mark.integration

QUEUE = "koppel"
WAIT = 30.0
"""A generous bound on each wait (the behaviour before: a dead worker's job waited over 60 s)."""


def start_worker(tmp_path: Path, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    config = tmp_path / "koppel.toml"
    config.write_text('[gateway]\nworker_heartbeat_seconds = 1\n\n'
                      '[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n')  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
            env={**os.environ, **SECRETS, "REDIS_URL": redis_url, "KOPPEL_LOG_LEVEL": "WARNING"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(what: str, done: Callable[[], bool], workers: list[subprocess.Popen[bytes]] = ()) -> None:  # type: ignore[assignment]
    deadline = time.monotonic() + WAIT
    while not done():
        for worker in workers:
            assert worker.poll() is None, f"a worker exited (code {worker.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {WAIT:.0f} s"
        time.sleep(0.05)


def listening(worker: subprocess.Popen[bytes], conn: redis.Redis) -> str:
    """The worker's name, once it is registered and listens for commands."""
    names: list[str] = []

    def registered() -> bool:
        for rq_worker in Worker.all(connection=conn):
            [(_, subscribers)] = conn.pubsub_numsub(rq_worker.pubsub_channel_name)
            if rq_worker.pid == worker.pid and subscribers:
                names.append(rq_worker.name)
                return True
        return False

    wait_for("registered worker", registered, [worker])
    return names[0]


def status(conn: redis.Redis, job_id: str) -> str:
    value = conn.hget(Job.key_for(job_id), "status")
    return value.decode() if value else "gone"


def finished(conn: redis.Redis, job_id: str) -> bool:
    """A job finished by RQ, or an event its worker's inbox pump ran itself (`[gateway] direct_events`)."""
    return status(conn, job_id) == "finished" or bool(conn.exists(keys.done(job_id)))


def event(n: int) -> Envelope:
    return Envelope.wrap(Event("order.created", "order", str(n), f"delivery-{n}", {"id": n}), source="woocommerce",
                         endpoint="shop")  # fmt: skip


def stop(worker: subprocess.Popen[bytes]) -> int | None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            return worker.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            return None
    return worker.returncode


def test_a_worker_rides_out_redis_outages_busy_and_idle_then_does_the_pending_and_new_work(tmp_path):
    server = EmbeddedRedis(data_dir=tmp_path / "redis-data", port=free_port())
    server.start()
    conn = redis.Redis.from_url(server.url)
    log = tmp_path / "worker.log"
    worker = start_worker(tmp_path, server.url, log)
    try:
        listening(worker, conn)
        queue = make_queue(conn, QUEUE)
        pending = [queue.enqueue("tests.worker_jobs.sleep", 0.3).id for _ in range(8)]
        wait_for("job started", lambda: conn.zcard(queue.started_job_registry.key) > 0, [worker])

        server.stop()  # while the worker is busy
        time.sleep(3)
        assert worker.poll() is None, "the worker exited while Redis was away"
        server.start()
        accepted = Ingestor(conn, queue_name=QUEUE).store([event(1)])
        done = [*pending, accepted[0].job_id]
        wait_for("pending and new jobs finished", lambda: all(finished(conn, j) for j in done), [worker])

        server.stop()  # and while it is idle
        time.sleep(3)
        assert worker.poll() is None, "the worker exited while Redis was away"
        server.start()
        accepted = Ingestor(conn, queue_name=QUEUE).store([event(2)])
        wait_for("the new event's job finished", lambda: finished(conn, accepted[0].job_id), [worker])
        assert not queue.failed_job_registry.get_job_ids()
        assert stop(worker) == 0
    finally:
        stop(worker)
        conn.close()
        server.stop()
    text = log.read_text()
    assert "Traceback" not in text
    # Per outage: Redis gone, Redis back, and the job handed back (the busy one); nothing per retry.
    assert len(text.splitlines()) <= 8, text


def test_a_job_whose_worker_is_killed_mid_run_runs_again_on_another_worker_and_writes_once(tmp_path, redis_url, rconn):
    log = tmp_path / "workers.log"
    workers = [start_worker(tmp_path, redis_url, log) for _ in range(2)]
    try:
        by_name = {listening(worker, rconn): worker for worker in workers}
        rconn.set(HOLD, 1)  # the first run stops after its write to the target, before the ledger entry
        queue = make_queue(rconn, QUEUE)
        job = queue.enqueue("tests.worker_jobs.write_once", "order-1")  # no retries: RQ's handling would fail it
        wait_for("the target write", lambda: rconn.llen(TARGET) == 1, workers)
        name = rconn.hget(job.key, "worker_name")
        assert name is not None
        victim = by_name[name.decode()]
        victim.kill()
        victim.wait()
        survivor = next(worker for worker in workers if worker is not victim)

        wait_for("the job run again and finished", lambda: status(rconn, job.id) == "finished", [survivor])
        assert rconn.lrange(TARGET, 0, -1) == [b"order-1"], "the target was written twice"
        ledger = Ledger(rconn, INTEGRATION, FLOW)
        assert ledger.lookup("order-1") == ("0", False)
        job.refresh()
        assert job.meta[DEATHS] == 1
        assert rconn.hget(job.key, "worker_name") != name
        assert not queue.failed_job_registry.get_job_ids()
        assert stop(survivor) == 0
    finally:
        for worker in workers:
            stop(worker)


def test_a_job_a_killed_worker_took_off_the_queue_but_never_started_is_run_by_another(tmp_path, redis_url, rconn):
    queue = make_queue(rconn, QUEUE)
    job = queue.enqueue("tests.worker_jobs.write_once", "order-2")  # no retries: RQ would fail it after a minute
    rconn.lmove(queue.key, queue.intermediate_queue_key)  # a worker's dequeue, and then the worker was killed
    assert not backlog(rconn, QUEUE).empty, "the stack would call this settled"
    worker = start_worker(tmp_path, redis_url, tmp_path / "worker.log")
    try:
        wait_for("the job run and finished", lambda: status(rconn, job.id) == "finished", [worker])
        assert rconn.lrange(TARGET, 0, -1) == [b"order-2"]
        assert rconn.llen(queue.intermediate_queue_key) == 0
        assert not queue.failed_job_registry.get_job_ids()
        assert backlog(rconn, QUEUE).empty
    finally:
        stop(worker)


def abandon(queue: Queue, job: Job, conn: redis.Redis) -> None:
    """A worker takes the job, starts it and dies: its heartbeat long expired."""
    taken = Queue.dequeue_any([queue], timeout=None, connection=conn, serializer=JSONSerializer)
    assert taken is not None and taken[0].id == job.id
    dead = KoppelWorker([queue], connection=conn, serializer=JSONSerializer, **worker_timing(1))
    execution = dead.prepare_execution(taken[0])
    dead.prepare_job_execution(taken[0], remove_from_intermediate_queue=True)
    assert recover(queue, orphan_after=30).requeued == [], "a job whose heartbeat lives is not touched"
    conn.zadd(queue.started_job_registry.key, {execution.composite_key: 1})


def test_a_job_whose_worker_died_again_and_again_is_failed_naming_why(rconn):
    queue = make_queue(rconn, "koppel-recovery-test")
    job = queue.enqueue("os.getpid")
    for death in range(1, MAX_WORKER_DEATHS):
        abandon(queue, job, rconn)
        assert recover(queue, orphan_after=30).requeued == [job.id]
        assert queue.get_job_ids() == [job.id] and status(rconn, job.id) == "queued"
        job.refresh()
        assert job.meta[DEATHS] == death
    abandon(queue, job, rconn)
    assert recover(queue, orphan_after=30).failed == [job.id]
    assert queue.get_job_ids() == [] and queue.failed_job_registry.get_job_ids() == [job.id]
    job.refresh()
    assert f"its worker died {MAX_WORKER_DEATHS} times while running it" in job.meta["reason"]


def test_a_job_taken_but_never_started_is_queued_again_on_a_later_pass(rconn):
    queue = make_queue(rconn, "koppel-recovery-test")
    job = queue.enqueue("os.getpid")
    Queue.dequeue_any([queue], timeout=None, connection=rconn, serializer=JSONSerializer)  # and the worker dies
    assert recover(queue, orphan_after=60).requeued == []  # first seen
    assert recover(queue, orphan_after=60).requeued == []  # not long enough ago
    assert recover(queue, orphan_after=0).requeued == [job.id]
    assert queue.get_job_ids() == [job.id]
    assert rconn.llen(queue.intermediate_queue_key) == 0
    assert recover(queue, orphan_after=0).requeued == []  # once
