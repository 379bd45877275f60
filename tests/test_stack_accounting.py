"""How the stack (and so `koppel demo`) accounts for records and knows the pipeline is idle.

`outcomes_of`: each delivery counts with its latest outcome (a failed job replayed and booked is booked).
`backlog`: every event job not done yet, wherever RQ keeps it — also one a worker took off the queue but
has not started (RQ's intermediate queue), and without waiting forever on one whose worker was killed.
"""

from __future__ import annotations

import pytest
from rq.job import JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer

from connectors.exactonline.ratelimit import Limits, RateLimiter
from gateway.activity import Activity
from gateway.ingest import inbox_key, make_queue
from gateway.stack import MARKER, Backlog, backlog, budget_waits, clear_data_dir, outcomes_of
from workers.pollers import POLL_JOB_PREFIX
from workers.worker import KoppelWorker, worker_timing

QUEUE = "koppel-test"


def entry(resource_id: str, outcome: str, job_id: str, at: float, reason: str = "") -> Activity:
    return Activity("shop-to-exact", "orders", "order.created", resource_id, outcome, at - 1, at, number=resource_id,
                    reason=reason, job_id=job_id, target_id="so-1" if outcome == "created" else "")  # fmt: skip


def test_a_failed_delivery_replayed_and_booked_counts_as_booked():
    log = [
        entry("7", "failed", "job-a", 1, "SKU(s) KOP-BON-25 missing"),  # order.created
        entry("7", "failed", "job-b", 2, "SKU(s) KOP-BON-25 missing"),  # order.updated
        entry("7", "created", "job-a", 3),  # the replay: order.created's job books it
        entry("7", "skipped", "job-b", 4, "already in Exact Online"),  # and order.updated's finds it booked
    ]
    (outcome,) = outcomes_of(["7"], log).values()
    assert (outcome.outcome, outcome.target_id, outcome.events) == ("created", "so-1", 4)


def test_a_failure_stands_while_it_is_a_deliverys_latest_outcome():
    log = [entry("7", "failed", "job-a", 1, "missing"), entry("7", "failed", "job-b", 2, "missing")]
    assert outcomes_of(["7"], log)["7"].outcome == "failed"
    log.append(entry("7", "failed", "job-a", 3, "still missing"))  # replayed too early: failed again
    assert (outcomes_of(["7"], log)["7"].outcome, outcomes_of(["7"], log)["7"].reason) == ("failed", "still missing")


def test_a_record_without_a_final_outcome_is_pending_and_others_are_left_out():
    log = [entry("7", "retrying", "job-a", 1), entry("8", "created", "job-c", 2)]
    assert {k: o.outcome for k, o in outcomes_of(["7", "9"], log).items()} == {"7": "pending", "9": "pending"}


@pytest.fixture
def queue(rconn) -> Queue:
    return make_queue(rconn, QUEUE)


def test_the_backlog_counts_a_job_a_worker_took_off_the_queue_but_did_not_start(rconn, queue):
    assert backlog(rconn, QUEUE) == Backlog() and backlog(rconn, QUEUE).empty
    queue.enqueue("os.getpid", job_id="one")
    queue.enqueue("os.getpid", job_id="two")
    queue.enqueue("os.getpid", job_id=f"{POLL_JOB_PREFIX}shop-orders")  # a poller's own job: not an event's
    rconn.xadd(inbox_key(QUEUE), {"id": "three", "e": "{}"})
    assert backlog(rconn, QUEUE) == Backlog(inbox=1, queued=2)
    # A worker's dequeue moves the job to RQ's intermediate queue; it is started a moment later.
    job, _ = Queue.dequeue_any([queue], timeout=None, connection=rconn, serializer=JSONSerializer)
    assert job is not None and job.id == "one"
    assert rconn.lrange(queue.intermediate_queue_key, 0, -1) == [b"one"]
    found = backlog(rconn, QUEUE)
    assert found == Backlog(inbox=1, queued=1, dequeued=1) and not found.empty
    assert found.describe() == "1 in the inbox, 1 queued, 1 taken by a worker"


def test_a_finished_job_left_in_the_intermediate_queue_is_not_work(rconn, queue):
    job = queue.enqueue("os.getpid", job_id="done")
    Queue.dequeue_any([queue], timeout=None, connection=rconn, serializer=JSONSerializer)
    job.set_status(JobStatus.FINISHED)  # a worker of several queues leaves it there until its maintenance
    assert backlog(rconn, QUEUE).empty


def test_a_job_whose_worker_was_killed_after_the_dequeue_counts_until_it_is_queued_again(rconn, queue):
    queue.enqueue("os.getpid", job_id="orphan")
    Queue.dequeue_any([queue], timeout=None, connection=rconn, serializer=JSONSerializer)  # then the worker dies
    assert backlog(rconn, QUEUE).dequeued == 1
    # Another worker's recovery notices it, and on a later pass (`orphan_after` on) queues it again.
    survivor = KoppelWorker([queue], connection=rconn, serializer=JSONSerializer, **worker_timing(1))
    survivor.orphan_after = 0
    survivor.clean_registries()
    assert backlog(rconn, QUEUE).dequeued == 1
    rconn.delete(queue.registry_cleaning_key)
    survivor.clean_registries()
    assert backlog(rconn, QUEUE) == Backlog(queued=1)
    assert queue.get_job_ids() == ["orphan"] and "orphan" not in queue.failed_job_registry.get_job_ids()


def test_a_started_job_whose_worker_stopped_beating_is_not_idle_and_is_named(rconn, queue):
    job = queue.enqueue("os.getpid", job_id="abandoned")
    Queue.dequeue_any([queue], timeout=None, connection=rconn, serializer=JSONSerializer)
    dead = KoppelWorker([queue], connection=rconn, serializer=JSONSerializer, **worker_timing(1))
    execution = dead.prepare_execution(job)
    dead.prepare_job_execution(job, remove_from_intermediate_queue=True)
    assert backlog(rconn, QUEUE) == Backlog(running=1)
    rconn.zadd(queue.started_job_registry.key, {execution.composite_key: 1})  # its heartbeat expired long ago
    found = backlog(rconn, QUEUE)
    assert found == Backlog(abandoned=1) and not found.empty
    assert found.describe() == "1 whose worker died, to be run again"


# -- the data directory ------------------------------------------------------------------------------


def test_an_earlier_runs_files_are_removed_and_anything_else_stays(tmp_path):
    made = ["stack.toml", "logs/gateway.log", "logs/worker-1.log", "logs/worker-2.log", "redis/dump.rdb",
            "redis/redis.log", "redis/appendonlydir/appendonly.aof.1.incr.aof"]  # fmt: skip
    kept = ["notes.txt", "logs/mine.txt", "redis/README"]
    for name in made + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    clear_data_dir(tmp_path)
    assert [name for name in made if (tmp_path / name).exists()] == []
    assert [name for name in kept if (tmp_path / name).exists()] == kept
    assert (tmp_path / MARKER).exists()


def test_with_a_redis_of_its_own_elsewhere_the_redis_files_stay(tmp_path):
    for name in ("stack.toml", "redis/dump.rdb"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    clear_data_dir(tmp_path, redis_too=False)
    assert not (tmp_path / "stack.toml").exists() and (tmp_path / "redis/dump.rdb").exists()


def test_a_directory_with_redis_data_no_demo_made_is_refused_and_left_alone(tmp_path):
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis/dump.rdb").write_text("a Koppel's own data")
    with pytest.raises(RuntimeError, match="holds Redis data that no demo put there"):
        clear_data_dir(tmp_path)
    assert (tmp_path / "redis/dump.rdb").read_text() == "a Koppel's own data"


def test_a_used_up_exact_budget_is_named_with_the_time_to_its_reset(rconn):
    clock = [1_000_000.0]
    limiter = RateLimiter(rconn, 42, Limits(per_minute=2, per_day=100), clock=lambda: clock[0], sleep=lambda _: None)
    limiter.acquire()
    assert budget_waits(rconn, now=clock[0]) == []  # a call left this minute
    limiter.acquire()
    assert budget_waits(rconn, now=clock[0] + 19.2) == ["Exact's minutely API budget used up, resets in 41 s"]
    assert budget_waits(rconn, now=clock[0] + 60) == []  # the window has reset
