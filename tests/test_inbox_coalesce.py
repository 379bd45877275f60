"""The inbox pump merges the waiting events of one record into one job (issue #14): one read, one lock, one
write, with the latest payload; every event keeps its activity line, and the merged ids resolve."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from redis.connection import AbstractConnection
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from gateway import cli, keys
from gateway.activity import ActivityLog
from gateway.console.health import failed_job
from gateway.envelope import Envelope, Event
from gateway.ingest import Ingestor, inbox_key, make_queue, merged_into, resolve_job_id
from gateway.replay import failed_job_ids, replay
from gateway.snapshots import SnapshotStore
from tests import test_orders_exactonline as exact_orders
from tests.test_orders_exactonline import SKUS, Env, order
from workers import jobs as jobs_module
from workers import runtime
from workers.inbox import GROUP, InboxPump
from workers.locks import WakingLock
from workers.policy import retry_schedule

pytestmark = pytest.mark.integration

STREAM = inbox_key("koppel")
env = exact_orders.env
"""The Exact sandbox with its items, and a runtime (tests/test_orders_exactonline.py)."""


def event(n: int, topic: str = "order.created", payload: dict[str, Any] | None = None, *, key: str = "") -> Envelope:
    body = payload if payload is not None else {"id": n, "topic": topic}
    wrapped = Event(topic, "order", str(n), key or f"{topic}-{n}-{time.monotonic_ns()}", body)
    return Envelope.wrap(wrapped, source="woocommerce", endpoint="shop")


def jobs(conn: redis.Redis) -> dict[str, Any]:
    return {job.id: job for job in Queue("koppel", connection=conn, serializer=JSONSerializer).get_jobs()}


def test_events_of_one_record_waiting_together_become_one_job_under_the_first_id(rconn):
    created7, created8, updated7, again7 = Ingestor(rconn).store(
        [event(7), event(8), event(7, "order.updated"), event(7, "order.updated", {"id": 7, "v": "latest"})]
    )
    pump = InboxPump(rconn, "koppel", result_ttl=60, failure_ttl=120)
    assert pump.drain(timeout=5) == 4
    made = jobs(rconn)
    assert list(made) == [created7.job_id, created8.job_id]  # stream order: where each record's first event was
    group = made[created7.job_id]
    assert group.args[0]["payload"] == {"id": 7, "v": "latest"} and group.args[0]["topic"] == "order.updated"
    assert [m["id"] for m in group.kwargs["group"]] == [created7.job_id, updated7.job_id, again7.job_id]
    assert [m["topic"] for m in group.kwargs["group"]] == ["order.created", "order.updated", "order.updated"]
    assert group.meta == {"endpoint": "shop", "topic": "order.created"}
    assert "+2 merged" in (group.description or "")
    assert made[created8.job_id].kwargs == {}
    for member in (updated7, again7):
        assert merged_into(rconn, member.job_id) == created7.job_id
        assert resolve_job_id(rconn, member.job_id) == created7.job_id
        assert 110 < rconn.ttl(keys.merged(member.job_id)) <= 120  # as long as the job can be kept (failed)
    assert merged_into(rconn, created7.job_id) is None and resolve_job_id(rconn, created8.job_id) == created8.job_id
    assert rconn.xlen(STREAM) == 0 and rconn.xpending(STREAM, GROUP)["pending"] == 0


def test_without_coalescing_each_event_is_its_own_job(rconn):
    accepted = Ingestor(rconn).store([event(7), event(7, "order.updated")])
    InboxPump(rconn, "koppel", coalesce=False).drain(timeout=5)
    assert list(jobs(rconn)) == [a.job_id for a in accepted]
    assert rconn.keys(keys.merged("*")) == []


def test_a_crash_before_exec_makes_the_same_jobs_and_aliases_after_the_reclaim(rconn, monkeypatch):
    accepted = Ingestor(rconn).store([event(1), event(2), event(1, "order.updated"), event(2, "order.updated")])
    crashing = InboxPump(rconn, "koppel", consumer="dies")

    def crash(pipe: object) -> None:
        raise RuntimeError("killed before EXEC")

    monkeypatch.setattr(crashing, "_execute", crash)
    with pytest.raises(RuntimeError):
        crashing.drain(timeout=1)
    assert jobs(rconn) == {} and rconn.keys(keys.merged("*")) == []  # nothing of the MULTI happened
    assert rconn.xpending(STREAM, GROUP)["pending"] == 4
    rescuer = InboxPump(rconn, "koppel", consumer="rescuer", claim_idle_ms=100)
    time.sleep(0.2)
    assert rescuer.drain(timeout=5) == 4
    assert list(jobs(rconn)) == [accepted[0].job_id, accepted[1].job_id]
    assert merged_into(rconn, accepted[2].job_id) == accepted[0].job_id
    assert merged_into(rconn, accepted[3].job_id) == accepted[1].job_id
    assert rconn.xlen(STREAM) == 0 and rconn.xpending(STREAM, GROUP)["pending"] == 0


def test_an_entry_merged_already_is_acknowledged_without_a_job(rconn):
    first, second = Ingestor(rconn).store([event(3), event(3, "order.updated")])
    InboxPump(rconn, "koppel").drain(timeout=5)
    raw = make_queue(rconn, "koppel").fetch_job(first.job_id)
    assert raw is not None
    # as if a slow pump's EXEC had run after the reclaiming one's: the merged entry comes round again, alone
    rconn.xadd(STREAM, {"id": second.job_id, "e": Envelope.model_validate(raw.args[0]).model_dump_json()})
    assert InboxPump(rconn, "koppel").drain(timeout=5) == 1
    assert list(jobs(rconn)) == [first.job_id]
    assert rconn.xlen(STREAM) == 0


class Worker(SimpleWorker):
    """RQ's SimpleWorker without its command subscription (whose thread can take a minute to join)."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def run_jobs(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_runtime", env.rt)
    Worker([make_queue(env.conn, "koppel")], connection=env.conn, serializer=JSONSerializer).work(burst=True)


def exact_calls(env: Env) -> dict[str, int]:
    return dict(env.sandbox.counters.snapshot()["by_endpoint"])


def test_created_and_updated_waiting_together_cost_one_booking_and_keep_both_activity_lines(env, monkeypatch):
    created, updated = Ingestor(env.conn).store([event(7101, "order.created", order(7101)),
                                                  event(7101, "order.updated", order(7101))])  # fmt: skip
    InboxPump(env.conn, "koppel").drain(timeout=5)
    before = exact_calls(env)
    run_jobs(env, monkeypatch)
    calls = {k: v - before.get(k, 0) for k, v in exact_calls(env).items() if "SalesOrders" in k}
    assert calls == {"POST salesorder/SalesOrders": 1}  # one run: no second lookup of the order
    assert env.in_exact("7101") == 1
    lines = ActivityLog(env.conn).entries("shop-to-exact")
    assert [(a.topic, a.outcome, a.job_id) for a in lines] == [
        ("order.created", "created", created.job_id), ("order.updated", "skipped", updated.job_id)]  # fmt: skip
    assert f"merged into job {created.job_id}" in lines[1].reason and lines[1].calls == 0
    assert lines[1].number == "7101"
    done = make_queue(env.conn, "koppel").fetch_job(created.job_id)
    assert done is not None and done.return_value()["merged"] == [updated.job_id]


def test_a_failed_group_replays_by_a_merged_id_and_books_once(env, monkeypatch, capsys):
    bad = order(7102)
    bad["line_items"][0]["sku"] = "NOT-AN-ITEM"
    created, updated = Ingestor(env.conn).store([event(7102, "order.created", bad), event(7102, "order.updated", bad)])
    InboxPump(env.conn, "koppel", retry_factory=lambda: retry_schedule(2, base=60)).drain(timeout=5)
    run_jobs(env, monkeypatch)
    lines = ActivityLog(env.conn).entries("shop-to-exact")
    assert [(a.outcome, a.job_id) for a in lines] == [("failed", created.job_id), ("skipped", updated.job_id)]
    assert "NOT-AN-ITEM" in lines[0].reason and lines[1].reason.endswith(": failed")
    assert failed_job_ids(env.conn, env.rt.config) == [created.job_id]  # one failed job for the record
    shown = failed_job(env.conn, env.rt.config, "shop-to-exact", updated.job_id)  # the console's failed-job page
    assert shown is not None and shown.id == created.job_id

    env.http.post(f"{env.live.url}/sandbox/seed/items", json={"skus": [*SKUS, "NOT-AN-ITEM"]}).raise_for_status()
    result = replay(env.conn, env.rt.config, [updated.job_id, created.job_id])  # both ids: requeued once
    assert result.requeued == [created.job_id] and result.merged == {updated.job_id: created.job_id}
    assert result.missing == []
    run_jobs(env, monkeypatch)
    assert env.in_exact("7102") == 1
    assert [a.outcome for a in ActivityLog(env.conn).entries("shop-to-exact")][2:] == ["created", "skipped"]
    assert replay(env.conn, env.rt.config, [updated.job_id]).missing == [updated.job_id]  # not failed any more


def test_a_retrying_group_logs_the_merged_event_only_when_the_outcome_is_final(env, monkeypatch):
    created, _ = Ingestor(env.conn).store([event(7103, "order.created", order(7103)),
                                                  event(7103, "order.updated", order(7103))])  # fmt: skip
    InboxPump(env.conn, "koppel", retry_factory=lambda: retry_schedule(1, base=60)).drain(timeout=5)
    env.http.post(f"{env.live.url}/sandbox/fail", json={"status": 503, "times": 50}).raise_for_status()
    run_jobs(env, monkeypatch)
    lines = ActivityLog(env.conn).entries("shop-to-exact")
    assert [(a.outcome, a.job_id) for a in lines] == [("retrying", created.job_id)]


def test_the_cli_names_the_job_a_merged_id_went_to(rconn, redis_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("WC_SECRET", "s")
    created, updated = Ingestor(rconn).store([event(9), event(9, "order.updated")])
    InboxPump(rconn, "koppel").drain(timeout=5)
    config = tmp_path / "koppel.toml"
    config.write_text('[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n')
    assert cli.main(["inbox", "--job", updated.job_id, "--config", str(config)]) == 1
    assert f"merged it into job {created.job_id}" in capsys.readouterr().err
    assert cli.main(["replay", "--job", updated.job_id, "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"merged into job {created.job_id}" in err and "queued" in err


@contextmanager
def round_trips() -> Iterator[list[int]]:
    """Count redis-py's round trips (a pipeline is one) made inside."""
    count = [0]
    original = AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def test_an_event_answered_by_its_seen_version_costs_no_call_no_snapshot_and_two_round_trips(env, monkeypatch):
    monkeypatch.setattr(runtime, "_runtime", env.rt)
    data = event(7104, "order.created", order(7104)).model_dump(mode="json")
    monkeypatch.setattr(jobs_module, "current_job", lambda: SimpleNamespace(id="first", retries_left=1))
    assert jobs_module.process_event(data)["integrations"]["shop-to-exact"]["outcome"] == "created"
    monkeypatch.setattr(jobs_module, "current_job", lambda: SimpleNamespace(id="again", retries_left=1))
    before = exact_calls(env)
    with round_trips() as trips:
        again = jobs_module.process_event(data)["integrations"]["shop-to-exact"]
    assert again["outcome"] == "skipped" and again["reason"] == "this version of the record was processed already"
    assert exact_calls(env) == before  # no target call
    # the lock's try with the switch and seen version reads; the activity line with the release
    assert trips[0] == 2
    store = SnapshotStore(env.conn)
    assert store.load("shop-to-exact", "first") is not None and store.load("shop-to-exact", "again") is None
    lines = ActivityLog(env.conn).entries("shop-to-exact")
    assert [(a.outcome, a.job_id) for a in lines] == [("created", "first"), ("skipped", "again")]
    assert env.conn.keys(keys.lock("*")) == []  # released


def test_a_seen_version_written_while_the_event_waited_for_the_lock_still_answers_it(env, monkeypatch):
    # the seen version is read with the lock's first try; a try that finds the lock busy read it too early
    monkeypatch.setattr(runtime, "_runtime", env.rt)
    data = event(7106, "order.created", order(7106)).model_dump(mode="json")
    monkeypatch.setattr(jobs_module, "current_job", lambda: SimpleNamespace(id="first", retries_left=1))
    assert jobs_module.process_event(data)["integrations"]["shop-to-exact"]["outcome"] == "created"
    [seen_key] = env.conn.keys(keys.cache("shop-to-exact", "seen:orders", "*"))
    written = env.conn.get(seen_key)
    env.conn.delete(seen_key)  # as if the first run were still going on, its seen version not yet written
    parts = ("shop-to-exact", "order", "7106")
    holder = WakingLock(env.conn, keys.lock(*parts), wake_name=keys.lock_wake(*parts), timeout=30,
                        thread_local=False)  # fmt: skip
    assert holder.acquire()

    def holder_ends() -> None:  # what a run holding the lock writes with its release
        env.conn.set(seen_key, written)
        holder.release()

    threading.Timer(0.3, holder_ends).start()
    monkeypatch.setattr(jobs_module, "current_job", lambda: SimpleNamespace(id="waited", retries_left=1))
    before = exact_calls(env)
    again = jobs_module.process_event(data)["integrations"]["shop-to-exact"]
    assert again["outcome"] == "skipped" and again["reason"] == "this version of the record was processed already"
    assert exact_calls(env) == before


def test_a_switched_off_integration_skips_the_event_without_running_it(env, monkeypatch):
    monkeypatch.setattr(runtime, "_runtime", env.rt)
    env.conn.set(keys.cache("shop-to-exact", "switched_off"), "the shop uninstalled Koppel")
    monkeypatch.setattr(jobs_module, "current_job", lambda: SimpleNamespace(id="off", retries_left=1))
    before = exact_calls(env)
    done = jobs_module.process_event(event(7105, "order.created", order(7105)).model_dump(mode="json"))
    assert done["integrations"]["shop-to-exact"] == {"outcome": "skipped",
                                                     "reason": "switched off: the shop uninstalled Koppel"}  # fmt: skip
    assert exact_calls(env) == before and SnapshotStore(env.conn).load("shop-to-exact", "off") is None
    [line] = ActivityLog(env.conn).entries("shop-to-exact")
    assert (line.outcome, line.reason) == ("skipped", "switched off: the shop uninstalled Koppel")
    assert env.conn.keys(keys.lock("*")) == []
