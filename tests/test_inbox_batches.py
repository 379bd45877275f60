"""Batch jobs (issue #14): the waiting events of several records of one integration and flow become one job
when the target can write them together (`workers.flows.batch_function`); a record the batch could not
write runs again alone, under its own job id."""

from __future__ import annotations

from typing import Any

import pytest
from rq.serializers import JSONSerializer

from connectors.contract import FlowResult
from gateway import keys
from gateway.activity import ActivityLog
from gateway.errors import TransientError
from gateway.ingest import Ingestor, make_queue, merged_into, resolve_job_id
from gateway.replay import failed_job_ids, replay
from tests import test_orders_exactonline as exact_orders
from tests.test_inbox_coalesce import Worker, event, jobs
from tests.test_orders_exactonline import Env, order
from workers import jobs as jobs_module
from workers import runtime
from workers.flows import Work
from workers.inbox import InboxPump

pytestmark = pytest.mark.integration

env = exact_orders.env
"""The Exact sandbox with its items, and a runtime (tests/test_orders_exactonline.py)."""


class FakeBatch:
    """A batch write standing in for the other engineer's: records the calls; `refuse` gets an Exception."""

    def __init__(self, refuse: set[str], whole: Exception | None = None) -> None:
        self.refuse = refuse
        self.whole = whole
        self.calls: list[list[str]] = []

    def __call__(self, works: list[Work]) -> list[FlowResult | Exception]:
        ids = [w.envelope.resource_id or "" for w in works]
        self.calls.append(ids)
        if self.whole is not None:
            raise self.whole
        return [TransientError(f"the target refused {i} in the batch") if i in self.refuse
                else FlowResult("created", number=i, target_id=f"T{i}", calls=1) for i in ids]  # fmt: skip


@pytest.fixture
def batch(monkeypatch: pytest.MonkeyPatch, env: Env) -> Any:
    def install(fake: FakeBatch) -> FakeBatch:
        monkeypatch.setattr(jobs_module, "batch_function",
                            lambda flow, kind, **_: fake if (flow, kind) == ("orders", "exactonline") else None)
        monkeypatch.setattr(runtime, "_runtime", env.rt)
        return fake

    return install


def pump(env: Env) -> InboxPump:
    return InboxPump(env.conn, "koppel", batchable=jobs_module.batchable_for(env.rt.config))


def run(env: Env) -> None:
    Worker([make_queue(env.conn, "koppel")], connection=env.conn, serializer=JSONSerializer).work(burst=True)


def test_records_of_one_flow_waiting_together_are_one_batch_job_and_a_refused_one_runs_alone(env, batch):
    fake = batch(FakeBatch(refuse={"7202"}))
    a, a2, b, c = Ingestor(env.conn).store([event(7201, "order.created", order(7201)),
                                            event(7201, "order.updated", order(7201)),
                                            event(7202, "order.created", order(7202)),
                                            event(7203, "order.created", order(7203))])  # fmt: skip
    assert pump(env).drain(timeout=5) == 4
    [made] = jobs(env.conn).values()
    assert made.id == f"batch-{a.job_id}" and made.func_name == "workers.jobs.process_batch"
    assert made.meta["batch"] == 3
    assert {merged_into(env.conn, m.job_id) for m in (a, a2, b, c)} == {made.id}
    run(env)
    assert fake.calls == [["7201", "7202", "7203"]]  # one call for the three records
    assert env.in_exact("7202") == 1  # refused in the batch: booked by its own job, under its own id
    assert resolve_job_id(env.conn, b.job_id) == b.job_id and merged_into(env.conn, b.job_id) is None
    lines = ActivityLog(env.conn).entries("shop-to-exact")
    assert sorted((x.resource_id, x.topic, x.outcome, x.job_id) for x in lines) == sorted([
        ("7201", "order.created", "created", a.job_id), ("7201", "order.updated", "skipped", a2.job_id),
        ("7203", "order.created", "created", c.job_id), ("7202", "order.created", "created", b.job_id)])  # fmt: skip
    assert env.conn.keys(keys.lock("*")) == []


def test_a_batch_job_run_again_writes_nothing_twice(env, batch):
    fake = batch(FakeBatch(refuse={"7212"}))
    a, b = Ingestor(env.conn).store([event(7211, "order.created", order(7211)),
                                     event(7212, "order.created", order(7212))])  # fmt: skip
    pump(env).drain(timeout=5)
    job = make_queue(env.conn, "koppel").fetch_job(f"batch-{a.job_id}")
    assert job is not None
    first = jobs_module.process_batch(*job.args)
    again = jobs_module.process_batch(*job.args)  # as RQ runs it again after its worker died
    assert fake.calls == [["7211", "7212"], ["7212"]]  # the second run: 7211 answered by its seen version
    assert first["alone"] == again["alone"] == [b.job_id]
    answered = again["integrations"]["shop-to-exact"]["7211"]
    assert answered["reason"] == "this version of the record was processed already"
    assert [j.id for j in jobs(env.conn).values()].count(b.job_id) == 1  # queued alone once


def test_a_batch_refused_whole_runs_each_record_alone_and_a_failing_one_replays_by_its_id(env, batch):
    batch(FakeBatch(refuse=set(), whole=TransientError("the batch endpoint is down")))
    bad = order(7222)
    bad["line_items"][0]["sku"] = "NOT-AN-ITEM"
    _, b = Ingestor(env.conn).store([event(7221, "order.created", order(7221)),
                                    event(7222, "order.created", bad)])  # fmt: skip
    pump(env).drain(timeout=5)
    run(env)
    assert env.in_exact("7221") == 1 and env.in_exact("7222") == 0
    assert failed_job_ids(env.conn, env.rt.config) == [b.job_id]  # the record's own job failed, not the batch
    env.http.post(f"{env.live.url}/sandbox/seed/items", json={"skus": [*exact_orders.SKUS, "NOT-AN-ITEM"]})
    assert replay(env.conn, env.rt.config, [b.job_id]).requeued == [b.job_id]
    run(env)
    assert env.in_exact("7222") == 1


def test_without_a_batch_write_records_stay_jobs_of_their_own(env, monkeypatch):
    monkeypatch.setattr(runtime, "_runtime", env.rt)
    accepted = Ingestor(env.conn).store([event(7231, "order.created", order(7231)),
                                         event(7232, "order.created", order(7232))])  # fmt: skip
    pump(env).drain(timeout=5)
    assert list(jobs(env.conn)) == [a.job_id for a in accepted]
