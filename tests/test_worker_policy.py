"""The worker's failure policy with a real RQ worker and Redis: permanent fails at once with a
reason, transient is retried with backoff, work on one resource is serialised."""

from __future__ import annotations

import logging
import random
import threading
import time

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from connectors.contract import FlowResult
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError, TransientError
from gateway.ingest import Ingestor
from tests.conftest import make_config
from workers import flows
from workers.inbox import InboxPump
from workers.policy import resource_lock, retry_schedule
from workers.worker import run_worker

pytestmark = pytest.mark.integration

CALLS: list[str] = []


@pytest.fixture
def flow(monkeypatch):
    """Install a test flow for orders → exactonline; its behaviour is chosen per test."""
    behaviour: dict[str, object] = {}

    def fake(work):
        CALLS.append(work.envelope.resource_id)
        error = behaviour.get("raise")
        if error is not None:
            raise error
        return FlowResult("created")

    flows.flow_function("orders")  # load built-ins first, then override
    monkeypatch.setitem(flows.FLOWS, "orders", fake)
    CALLS.clear()
    return behaviour


def enqueue(redis_conn, retry=None) -> str:
    ingestor = Ingestor(redis_conn)
    envelope = Envelope.wrap(
        Event("order.created", "order", "42", f"k-{time.time_ns()}", {"id": 42}), source="woocommerce", endpoint="shop"
    )
    job_id = ingestor.store([envelope])[0].job_id
    InboxPump(redis_conn, "koppel", retry_factory=retry).drain(timeout=10)  # a worker's pump makes the job
    return job_id


def test_permanent_failure_lands_in_failed_registry_at_once_with_its_reason(flow, rconn, redis_url):
    flow["raise"] = PermanentError("SKU KOP-9 does not exist in Exact Online")
    job_id = enqueue(rconn, retry=lambda: retry_schedule(5))
    run_worker(make_config(), redis_url, burst=True)
    queue = Queue("koppel", connection=rconn, serializer=JSONSerializer)
    assert job_id in queue.failed_job_registry.get_job_ids()
    job = queue.fetch_job(job_id)
    assert job.meta["reason"] == "SKU KOP-9 does not exist in Exact Online"
    assert CALLS == ["42"]
    assert queue.scheduled_job_registry.get_job_ids() == []


def test_an_expected_failure_is_one_log_line_naming_it_without_a_traceback(flow, rconn, redis_url, caplog):
    flow["raise"] = PermanentError("SKU KOP-9 does not exist in Exact Online; create it there, then replay")
    job_id = enqueue(rconn)
    with caplog.at_level(logging.WARNING):
        run_worker(make_config(), redis_url, burst=True)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING and "42" in r.getMessage()]
    assert [r.name for r in lines] == ["koppel.worker"], [r.getMessage() for r in lines]
    assert "SKU KOP-9 does not exist in Exact Online; create it there" in lines[0].getMessage()
    assert not any("Traceback" in r.getMessage() or r.exc_info for r in caplog.records)
    job = Queue("koppel", connection=rconn, serializer=JSONSerializer).fetch_job(job_id)
    assert "PermanentError" in (job.latest_result().exc_string or "")  # kept for whoever replays it


def test_an_unexpected_failure_keeps_its_traceback(flow, rconn, redis_url, caplog):
    flow["raise"] = ZeroDivisionError("division by zero")
    enqueue(rconn)
    with caplog.at_level(logging.WARNING):
        run_worker(make_config(), redis_url, burst=True)
    assert any("Traceback" in r.getMessage() and "ZeroDivisionError" in r.getMessage() for r in caplog.records)


def test_transient_failure_is_scheduled_for_retry(flow, rconn, redis_url):
    flow["raise"] = TransientError("Exact Online answered 503")
    job_id = enqueue(rconn, retry=lambda: retry_schedule(3, base=60))
    run_worker(make_config(), redis_url, burst=True)
    queue = Queue("koppel", connection=rconn, serializer=JSONSerializer)
    assert job_id in queue.scheduled_job_registry.get_job_ids()
    job = queue.fetch_job(job_id)
    assert job.retries_left == 2
    assert job.meta["last_error"] == "Exact Online answered 503"


def test_success_records_a_summary_without_payload(flow, rconn, redis_url):
    job_id = enqueue(rconn)
    run_worker(make_config(), redis_url, burst=True)
    result = Queue("koppel", connection=rconn, serializer=JSONSerializer).fetch_job(job_id).return_value()
    assert result["integrations"] == {"shop-to-exact": {"outcome": "created"}}


def test_retry_schedule_grows_exponentially_with_jitter_and_a_cap():
    retry = retry_schedule(10, base=5, cap=600, rng=random.Random(1))
    assert retry.max == 10
    for n, interval in enumerate(retry.intervals):
        nominal = min(600, 5 * 2**n)
        assert 0.5 * nominal - 1 <= interval <= 1.5 * nominal + 1
    assert len(set(retry_schedule(10, rng=random.Random(2)).intervals) ^ set(retry.intervals)) > 0


def test_resource_lock_serialises_work_on_one_resource(rconn):
    inside = []
    overlap = []

    def work(name: str) -> None:
        with resource_lock(rconn, "shop-to-exact", "order", "42", wait=5):
            if inside:
                overlap.append(name)
            inside.append(name)
            time.sleep(0.05)
            inside.remove(name)

    threads = [threading.Thread(target=work, args=(str(i),)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == []


def test_busy_resource_is_a_transient_failure(rconn):
    with (
        resource_lock(rconn, "i", "order", "7"),
        pytest.raises(TransientError, match="another job is working"),
        resource_lock(rconn, "i", "order", "7", wait=0.1),
    ):
        pass


def test_resource_lock_is_renewed_while_its_work_runs_and_expires_when_its_holder_is_gone(rconn):
    with resource_lock(rconn, "i", "order", "8", hold=0.6):
        time.sleep(1.2)  # twice the hold: renewed meanwhile
        with pytest.raises(TransientError), resource_lock(rconn, "i", "order", "8", wait=0.1):
            pass
    # A holder that died stops renewing: its lock frees itself after `hold`.
    assert rconn.set("koppel:lock:i:order:9", "dead-worker-token", px=500)
    with resource_lock(rconn, "i", "order", "9", wait=2):
        pass


def test_a_released_resource_locks_wake_token_is_not_another_resources_lock(rconn):
    # The wake list lives outside the lock namespace: order "10" released leaves its wake token,
    # which must not look like a held lock for a resource whose id happens to end in "wake".
    with resource_lock(rconn, "i", "order", "10"):
        pass
    assert rconn.llen("koppel:lockwake:i:order:10") == 1
    with resource_lock(rconn, "i", "order", "10", "wake", wait=0.1):
        pass
