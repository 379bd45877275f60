"""The Exact Online poller against the sandbox over real HTTP, with real Redis and a real RQ worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from connectors.exactonline.auth import OAuthApp
from connectors.exactonline.sandbox import ExactSandbox, connect_sandbox, create_sandbox
from gateway.config import Config, parse_config
from gateway.ingest import JOB_FUNC
from tests.conftest import LiveServer, serve
from workers import pollers, runtime
from workers.inbox import pump_for
from workers.pollers import cursor_key, last_polls, poll, poll_job_ids, read_cursor, schedule_polls, stream_polls
from workers.worker import run_worker

pytestmark = pytest.mark.integration

SYSTEM = "exact"
DIVISION = 1234567
SECRET = "state-signing-secret"
REDIRECT = "https://koppel.example/oauth/exact/callback"
ENV = {"EXACT_CLIENT_SECRET": "sandbox-secret", "WC_KEY": "ck", "WC_SECRET": "cs"}


def make_config(base_url: str, interval: int = 60) -> Config:
    return parse_config(
        {
            "systems": [
                {
                    "id": SYSTEM,
                    "kind": "exactonline",
                    "base_url": base_url,
                    "credentials": {"client_secret": "env:EXACT_CLIENT_SECRET"},
                    "settings": {"client_id": "koppel-sandbox", "poll_interval_seconds": interval},
                },
                {"id": "shop", "kind": "woocommerce", "credentials": {"key": "env:WC_KEY", "secret": "env:WC_SECRET"}},
            ],
            "integrations": [{"id": "exact-to-shop", "source": SYSTEM, "target": "shop", "flows": ["orders"]}],
        },
        environ=ENV,
    )


@dataclass
class Env:
    live: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    conn: redis.Redis
    config: Config

    @property
    def queue(self) -> Queue:
        return Queue(self.config.gateway.queue, connection=self.conn, serializer=JSONSerializer)

    def seed_orders(self, *refs: str) -> list[str]:
        """Sales orders created in the sandbox's administration (as a user of Exact would)."""
        item = self.control("seed/items", {"skus": ["KOP-1"]})["items"]["KOP-1"]
        account = self.control("seed", {"entity": "crm/Accounts", "records": [{"Name": "Jörg"}]})["ids"][0]
        orders = [
            {"OrderedBy": account, "YourRef": ref, "SalesOrderLines": [{"Item": item, "Quantity": 2}]} for ref in refs
        ]
        return self.control("seed", {"entity": "salesorder/SalesOrders", "records": orders})["ids"]

    def control(self, action: str, body: dict) -> dict:
        return self.http.post(f"{self.live.url}/sandbox/{action}", json=body).raise_for_status().json()

    def cursor(self, entity: str = "SalesOrderHeaders") -> int:
        """The stored cursor (a Sync API Timestamp; 0 before the first page)."""
        return int(read_cursor(self.conn, cursor_key(SYSTEM, str(DIVISION), entity)) or 0)

    def event_jobs(self) -> list:
        pump_for(self.conn, self.config.gateway).drain(timeout=10)  # a worker's pump makes the jobs
        jobs = [self.queue.fetch_job(job_id) for job_id in self.queue.job_ids]
        return [job for job in jobs if job.func_name == JOB_FUNC]


@pytest.fixture
def env(rconn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    sandbox = create_sandbox(redirect_uris=(REDIRECT,), rate_limits=False)
    live = serve(sandbox)
    try:
        with httpx.Client(timeout=10) as http:
            config = make_config(live.url)
            # What `koppel worker` installs; restored after the test.
            rt = runtime.Runtime(config=config, connection=rconn)
            monkeypatch.setattr(runtime, "_runtime", rt)
            app = OAuthApp(live.url, "koppel-sandbox", "sandbox-secret", REDIRECT)
            connect_sandbox(http, app, rconn, SYSTEM)
            try:
                yield Env(live, sandbox.state.sandbox, http, rconn, config)
            finally:
                rt.close()
    finally:
        live.stop()


def test_new_sales_orders_become_process_event_jobs(env):
    ids = env.seed_orders("WC-1", "WC-2")
    result = poll(SYSTEM, "SalesOrderHeaders")
    assert result | {"next_poll": None} == {
        "system": SYSTEM, "scope": str(DIVISION), "stream": "SalesOrderHeaders", "pages": 1, "records": 2,
        "queued": 2, "duplicates": 0, "cursor": str(env.cursor()), "next_poll": None,
    }  # fmt: skip
    jobs = env.event_jobs()
    envelopes = sorted((job.args[0] for job in jobs), key=lambda e: e["payload"]["YourRef"])
    assert [e["payload"]["YourRef"] for e in envelopes] == ["WC-1", "WC-2"]
    first = envelopes[0]
    assert first["source"] == "exactonline" and first["endpoint"] == SYSTEM
    assert first["topic"] == "SalesOrderHeaders.sync" and first["resource"] == "SalesOrderHeaders"
    assert first["resource_id"] == ids[0] == first["payload"]["OrderID"]
    timestamp = first["payload"]["Timestamp"]
    assert first["delivery_key"] == f"sync:{DIVISION}:SalesOrderHeaders:{ids[0]}:{timestamp}"
    assert env.cursor() == max(e["payload"]["Timestamp"] for e in envelopes)
    assert all(job.retries_left == env.config.gateway.retry_attempts for job in jobs)  # the gateway's schedule


def test_a_poll_without_changes_queues_nothing_and_keeps_the_cursor(env):
    env.seed_orders("WC-1")
    poll(SYSTEM, "SalesOrderHeaders")
    cursor = env.cursor()
    before = time.time()
    result = poll(SYSTEM, "SalesOrderHeaders")
    assert (result["records"], result["queued"], result["cursor"]) == (0, 0, str(cursor))
    assert env.cursor() == cursor and len(env.event_jobs()) == 1
    polled = last_polls(env.conn, SYSTEM)[f"{DIVISION}:SalesOrderHeaders"]  # also with nothing new
    assert before <= polled <= time.time()  # the web console's "last poll"
    env.seed_orders("WC-2")  # a later change is picked up from the cursor, the earlier one not again
    result = poll(SYSTEM, "SalesOrderHeaders")
    assert (result["records"], result["queued"]) == (1, 1) and env.cursor() > cursor
    assert sorted(job.args[0]["payload"]["YourRef"] for job in env.event_jobs()) == ["WC-1", "WC-2"]


def test_a_crash_before_the_cursor_is_saved_rereads_the_page_without_duplicate_jobs(env, monkeypatch):
    env.seed_orders("WC-1", "WC-2", "WC-3")

    def crash(*args: object) -> int:
        raise RuntimeError("worker died between storing the page and saving its cursor")

    with monkeypatch.context() as patch:
        patch.setattr(pollers, "save_cursor", crash)
        with pytest.raises(RuntimeError, match="worker died"):
            poll(SYSTEM, "SalesOrderHeaders")
    assert len(env.event_jobs()) == 3  # the page was stored...
    assert env.cursor() == 0  # ...but its cursor was not
    assert len(env.queue.scheduled_job_registry.get_job_ids()) == 1  # a failed poll still schedules the next
    failed = stream_polls(env.conn, SYSTEM)["SalesOrderHeaders"]  # for the notifier's stall check
    assert failed.failed > 0 and failed.error == "unexpected RuntimeError" and failed.ok == failed.read == 0

    result = poll(SYSTEM, "SalesOrderHeaders")
    assert (result["records"], result["queued"], result["duplicates"]) == (3, 0, 3)
    done = stream_polls(env.conn, SYSTEM)["SalesOrderHeaders"]
    assert done.ok == done.read >= done.failed and done.scope == str(DIVISION)
    assert len(env.event_jobs()) == 3
    assert env.cursor() == int(result["cursor"]) > 0
    assert poll(SYSTEM, "SalesOrderHeaders")["records"] == 0


def test_the_cursor_advances_page_by_page_and_a_crash_rereads_only_the_unsaved_page(env, monkeypatch):
    env.sandbox.config.sync_page_size = 2
    env.seed_orders("WC-1", "WC-2", "WC-3", "WC-4", "WC-5")
    saves: list[int] = []
    save = pollers.save_cursor

    def crash_on_second_page(connection, key, cursor):
        if saves:
            raise RuntimeError("worker died")
        saves.append(cursor)
        return save(connection, key, cursor)

    with monkeypatch.context() as patch:
        patch.setattr(pollers, "save_cursor", crash_on_second_page)
        with pytest.raises(RuntimeError):
            poll(SYSTEM, "SalesOrderHeaders")
    jobs = env.event_jobs()
    assert len(jobs) == 4 and env.cursor() == int(saves[0])
    first_page = sorted(job.args[0]["payload"]["Timestamp"] for job in jobs)[:2]
    assert int(saves[0]) == first_page[-1]

    result = poll(SYSTEM, "SalesOrderHeaders")
    assert (result["pages"], result["records"], result["queued"], result["duplicates"]) == (2, 3, 1, 2)
    assert sorted(job.args[0]["payload"]["YourRef"] for job in env.event_jobs()) == [f"WC-{i}" for i in range(1, 6)]


def test_concurrent_polls_of_one_division_read_once(env, monkeypatch):
    env.seed_orders("WC-1")
    other_done = threading.Event()
    save = pollers.save_cursor

    def slow_save(*args):  # hold the lock until the other poll has come and gone
        assert other_done.wait(10), "the second poll did not finish while the first held the lock"
        return save(*args)

    monkeypatch.setattr(pollers, "save_cursor", slow_save)
    results: list[dict] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            result = poll(SYSTEM, "SalesOrderHeaders")
            results.append(result)
            if "skipped" in result:
                other_done.set()
        except BaseException as exc:
            errors.append(exc)
            other_done.set()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors
    skipped = [r for r in results if "skipped" in r]
    read = [r for r in results if "skipped" not in r]
    assert len(skipped) == 1 and skipped[0]["skipped"] == "another poll is running"
    assert len(read) == 1 and read[0]["queued"] == 1
    assert len(env.event_jobs()) == 1
    assert len(env.queue.scheduled_job_registry.get_job_ids()) == 1


def test_schedule_polls_twice_leaves_one_pending_poll(env):
    first = schedule_polls(env.conn, env.config)
    assert first == [poll_job_ids(SYSTEM, "SalesOrderHeaders")[0]]
    assert schedule_polls(env.conn, env.config) == []
    scheduled = env.queue.scheduled_job_registry.get_job_ids()
    assert scheduled == first
    job = env.queue.fetch_job(first[0])
    assert (job.func_name, job.args) == ("workers.pollers.poll", [SYSTEM, "SalesOrderHeaders"])


def test_schedule_polls_from_many_workers_at_once_leaves_one_pending_poll(env):
    barrier = threading.Barrier(6)
    results: list[list[str]] = []

    def run() -> None:
        barrier.wait()
        results.append(schedule_polls(env.conn, env.config))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(len(r) for r in results) == [0, 0, 0, 0, 0, 1]
    assert len(env.queue.scheduled_job_registry.get_job_ids()) == 1


def test_scheduled_poll_runs_in_the_worker_and_reschedules_itself(env, redis_url):
    config = make_config(env.live.url, interval=1)
    env.seed_orders("WC-1")
    slot_a, slot_b = poll_job_ids(SYSTEM, "SalesOrderHeaders")
    assert schedule_polls(env.conn, config) == [slot_a]
    time.sleep(1.2)  # due now
    run_worker(config, redis_url, burst=True, max_jobs=1)  # the scheduler enqueues the poll, the worker runs it
    poll = env.queue.fetch_job(slot_a)
    assert poll.get_status() == "finished", poll.latest_result() and poll.latest_result().exc_string
    assert poll.return_value()["queued"] == 1 and poll.return_value()["next_poll"] == slot_b
    assert [job.args[0]["payload"]["YourRef"] for job in env.event_jobs()] == ["WC-1"]
    assert env.queue.scheduled_job_registry.get_job_ids() == [slot_b]  # the next poll, under the other id
    assert schedule_polls(env.conn, config) == []  # a worker starting now adds nothing

    env.queue.empty()  # as if the event job had been processed
    env.seed_orders("WC-2")
    time.sleep(1.2)
    run_worker(config, redis_url, burst=True, max_jobs=1)
    assert env.queue.fetch_job(slot_b).return_value()["next_poll"] == slot_a
    assert [job.args[0]["payload"]["YourRef"] for job in env.event_jobs()] == ["WC-2"]
    assert env.queue.scheduled_job_registry.get_job_ids() == [slot_a]
