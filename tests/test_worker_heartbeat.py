"""KoppelWorker's own heartbeat: one round trip, back-to-back beats and state writes not repeated,
and never a key left with a shorter TTL than RQ's beats would give it."""

from __future__ import annotations

import pytest
from rq import Queue
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from workers.worker import KoppelWorker, worker_timing

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(rconn):
    queue = Queue("koppel-heartbeat-test", connection=rconn, serializer=JSONSerializer)
    w = KoppelWorker([queue], connection=rconn, serializer=JSONSerializer, **worker_timing(5))
    w.register_birth()
    yield w
    w.register_death()


def test_a_beat_sets_the_worker_keys_ttl_and_a_repeat_right_after_is_not_sent(worker, rconn):
    worker.heartbeat()
    assert rconn.hget(worker.key, "last_heartbeat")
    assert worker.worker_ttl + 50 < rconn.ttl(worker.key) <= worker.worker_ttl + 60
    rconn.hset(worker.key, "last_heartbeat", "marker")
    worker.heartbeat()  # the key got this very TTL a moment ago: not sent again
    assert rconn.hget(worker.key, "last_heartbeat") == b"marker"


def test_a_beat_after_a_shorter_one_is_sent(worker, rconn):
    worker.heartbeat()
    with rconn.pipeline() as pipeline:  # as RQ's job preparation beats: a job's TTL, in a pipeline
        worker.heartbeat(7, pipeline=pipeline)
        pipeline.execute()
    assert rconn.ttl(worker.key) <= 7
    rconn.hset(worker.key, "last_heartbeat", "marker")
    worker.heartbeat()
    assert rconn.hget(worker.key, "last_heartbeat") != b"marker"
    assert rconn.ttl(worker.key) > worker.worker_ttl + 50


def test_a_state_written_a_moment_ago_is_not_written_again_and_a_new_one_is(worker, rconn):
    worker.set_state(WorkerStatus.IDLE)
    rconn.hset(worker.key, "state", "marker")
    worker.set_state(WorkerStatus.IDLE)
    assert rconn.hget(worker.key, "state") == b"marker"
    worker.set_state(WorkerStatus.BUSY)
    assert rconn.hget(worker.key, "state") == WorkerStatus.BUSY.encode()


def test_a_burst_worker_finishes_back_to_back_jobs(rconn):
    queue = Queue("koppel-heartbeat-test", connection=rconn, serializer=JSONSerializer)
    jobs = [queue.enqueue("builtins.len", [i] * i) for i in range(1, 6)]
    worker = KoppelWorker([queue], connection=rconn, serializer=JSONSerializer, **worker_timing(5))
    assert worker.work(burst=True)
    assert [job.get_status(refresh=True) for job in jobs] == ["finished"] * 5
    assert [job.return_value() for job in jobs] == [1, 2, 3, 4, 5]
