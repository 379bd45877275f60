"""A direct event (run by a worker straight from the inbox, no RQ job: `[gateway] direct_events`) is found by
every look-up of a job id the gateway answered: `koppel replay --job`, `koppel inbox --job`, the admin API's
replay and the console's failed-job pages show it as finished, with what, when and by whom, as they show a
finished RQ job; a merged member's id resolves to it.

The events are delivered through the real gateway (real HTTP, real Redis); running them directly is what the
pump does on success (docs/architecture.md): the inbox entry gone, `gateway.ingest.write_done`'s record kept,
merged members' aliases written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from connectors import registry
from gateway import keys
from gateway.app import create_app
from gateway.cli import main
from gateway.ingest import done_record, find_in_inbox, inbox_key, make_queue, write_done
from gateway.replay import locate_job
from tests.conftest import SECRETS, serve, woo_headers, woo_order

pytestmark = pytest.mark.integration

CONFIG = """\
[gateway]
admin_token = "env:ADMIN_TOKEN"

[[endpoints]]
id = "shop"
kind = "woocommerce"
secret = "env:WC_SECRET"

[[systems]]
id = "exact"
kind = "exactonline"
settings = { client_id = "koppel-app" }
credentials = { client_secret = "env:EXACT_CLIENT_SECRET" }

[[integrations]]
id = "shop-to-exact"
source = "shop"
target = "exact"
flows = ["orders"]
"""
ENDED = "2026-12-04T23:30:00.123456+00:00"
RESULT = {"outcome": "created", "target_id": "exact-guid-1", "calls": 1}


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> str:
    for name, value in (SECRETS | {"EXACT_CLIENT_SECRET": "exact-secret"}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", redis_url)
    path = tmp_path / "koppel.toml"
    path.write_text(CONFIG)
    return str(path)


@pytest.fixture
def site(config_file: str, redis_url: str) -> Iterator[httpx.Client]:
    """The gateway (webhooks, admin API, console), served over HTTP."""
    live = serve(create_app(registry.load(Path(config_file)), redis_url))
    try:
        with httpx.Client(base_url=live.url, timeout=10) as client:
            yield client
    finally:
        live.stop()


def deliver(site: httpx.Client, order_id: int, topic: str = "order.created") -> str:
    body = woo_order(order_id)
    answer = site.post("/webhooks/shop", content=body, headers=woo_headers(body, topic))
    assert answer.status_code == 202, answer.text
    (job_id,) = answer.json()["jobs"]
    return str(job_id)


def run_directly(conn: redis.Redis, job_id: str, merged: tuple[str, ...] = (), ttl: int = 3600) -> dict:
    """What the pump leaves once it ran the events `job_id` (+ `merged`) itself: no inbox entry, no RQ job, the
    outcome under koppel:done:<job id>, each merged id an alias of it."""
    stream = inbox_key("koppel")
    entry = find_in_inbox(conn, "koppel", job_id)
    assert entry is not None
    record = {"id": job_id, "status": "finished", "description": f"shop order.created {entry.resource_id}",
              "endpoint": "shop", "topic": "order.created", "resource_id": entry.resource_id,
              "received_at": entry.received_at, "ended_at": ENDED, "worker": "worker-1.pump", "result": RESULT,
              "merged": list(merged)}  # fmt: skip
    with conn.pipeline() as pipe:
        for entry_id, fields in conn.xrange(stream):
            if fields[b"id"].decode() in (job_id, *merged):
                pipe.xdel(stream, entry_id)
        for member in merged:
            pipe.set(keys.merged(member), job_id, ex=ttl)
        write_done(pipe, record, ttl)
        pipe.execute()
    return record


def test_write_done_keeps_the_record_for_the_result_ttl_and_done_record_reads_it(rconn):
    record = {"id": "job-a", "status": "finished", "ended_at": ENDED, "result": RESULT, "merged": ["job-b"]}
    write_done(rconn, record, 600)
    assert done_record(rconn, "job-a") == record
    assert 590 < rconn.ttl(keys.done("job-a")) <= 600
    write_done(rconn, record | {"id": "job-c"}, 0)  # [retention] jobs = 0: finished jobs are not kept
    assert done_record(rconn, "job-c") is None and not rconn.exists(keys.done("job-c"))
    rconn.set(keys.done("job-d"), b"not json")
    assert done_record(rconn, "job-d") is None and done_record(rconn, "job-b") is None  # no alias resolved here


def test_locate_job_finds_a_direct_event_and_its_merged_member_as_finished(site, rconn):
    first, second = deliver(site, 501), deliver(site, 501, "order.updated")
    assert locate_job(rconn, "koppel", first).state == "inbox"
    run_directly(rconn, first, merged=(second,))
    found = locate_job(rconn, "koppel", first)
    assert (found.state, found.direct, found.merged, found.ended_at, found.result) == (
        "finished", True, False, ENDED, RESULT)  # fmt: skip
    alias = locate_job(rconn, "koppel", second)
    assert (alias.runs_as, alias.state, alias.direct, alias.merged) == (first, "finished", True, True)
    assert locate_job(rconn, "koppel", "nope").state == "unknown"


def test_replay_of_a_direct_event_says_it_finished_not_failed(site, rconn, config_file, capsys):
    first, second = deliver(site, 502), deliver(site, 502, "order.updated")
    run_directly(rconn, first, merged=(second,))
    assert main(["replay", "--config", config_file, "--job", first]) == 1
    err = capsys.readouterr().err
    assert f"job {first} is not in the failed registry: it finished at {ENDED}" in err
    assert "shop order.created 502; run directly from the inbox by worker worker-1.pump, no RQ job" in err
    assert "rq-dashboard does not list it" in err and err.rstrip().endswith("not failed")
    assert main(["replay", "--config", config_file, "--job", second, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["missing"] == [second] and doc["requeued"] == [] and doc["merged"] == {}
    assert doc["reasons"][second].startswith(f"it was merged into job {first} (an event for the same record, run as "
                                             f"one job), which finished at {ENDED}")  # fmt: skip
    assert doc["where"][second] == {"job_id": second, "runs_as": first, "state": "finished", "direct": True,
                                    "description": "shop order.created 502", "ended_at": ENDED,
                                    "worker": "worker-1.pump", "result": RESULT}  # fmt: skip
    assert make_queue(rconn, "koppel").job_ids == []  # nothing was made an RQ job


def test_a_finished_rq_job_shows_the_same_fields(site, rconn, config_file, capsys):
    from rq import SimpleWorker

    queue = make_queue(rconn, "koppel")
    job = queue.enqueue("bench.drain.noop.noop", description="shop order.created 503")
    SimpleWorker([queue], connection=rconn, serializer=queue.serializer).work(burst=True)
    assert main(["replay", "--config", config_file, "--job", job.id, "--json"]) == 1
    where = json.loads(capsys.readouterr().out)["where"][job.id]
    assert (where["state"], where["direct"], where["description"]) == ("finished", False, "shop order.created 503")
    assert where["ended_at"] and where["ended_at"].endswith("+00:00") and where["worker"]


def test_inbox_job_of_a_direct_event_says_a_worker_ran_it(site, rconn, config_file, capsys):
    first, second = deliver(site, 504), deliver(site, 504, "order.updated")
    third = deliver(site, 505)
    assert main(["inbox", "--config", config_file, "--job", first]) == 0  # still waiting: listed
    capsys.readouterr()
    run_directly(rconn, first, merged=(second,))
    assert main(["inbox", "--config", config_file, "--job", first, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["entries"] == [] and doc["depth"] == 1 and "merged_into" not in doc
    assert doc["error"].startswith(f"job {first} is not in the inbox of queue koppel: a worker ran it directly, "
                                   f"without an RQ job: it finished at {ENDED}")  # fmt: skip
    assert (doc["job"]["state"], doc["job"]["direct"], doc["job"]["result"]) == ("finished", True, RESULT)
    assert main(["inbox", "--config", config_file, "--job", second]) == 1
    err = capsys.readouterr().err
    assert f"a worker merged it into job {first}" in err and f"which finished at {ENDED}" in err
    assert main(["inbox", "--config", config_file, "--job", third]) == 0


def test_the_admin_api_replay_says_where_a_direct_event_is(site, rconn):
    first, second = deliver(site, 506), deliver(site, 506, "order.updated")
    run_directly(rconn, first, merged=(second,))
    auth = {"authorization": f"Bearer {SECRETS['ADMIN_TOKEN']}"}
    answer = site.post("/api/v1/replay", json={"jobs": [first, second, "gone"]}, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["requeued"] == [] and body["missing"] == [first, second, "gone"]
    assert body["where"][first] | {"result": None} == {
        "job_id": first, "runs_as": first, "state": "finished", "direct": True, "description": "shop order.created 506",
        "ended_at": ENDED, "worker": "worker-1.pump", "result": None}  # fmt: skip
    assert body["where"][first]["result"] == RESULT
    assert (body["where"][second]["runs_as"], body["where"][second]["state"]) == (first, "finished")
    assert body["where"]["gone"]["state"] == "unknown"


def test_the_console_says_a_direct_event_finished_instead_of_replaying_it(site, rconn):
    first, second = deliver(site, 507), deliver(site, 507, "order.updated")
    run_directly(rconn, first, merged=(second,))
    assert site.post("/console/login", data={"token": SECRETS["ADMIN_TOKEN"]}).status_code == 303
    page = site.get("/console/integrations/shop-to-exact/failed")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and csrf
    for job_id in (first, second):
        answer = site.post(f"/console/integrations/shop-to-exact/failed/{job_id}/replay", data={"csrf": csrf.group(1)})
        assert answer.status_code == 404 and "no failed job" in answer.text
        assert f"finished at {ENDED}" in answer.text and "run directly from the inbox" in answer.text
        remap = site.get(f"/console/integrations/shop-to-exact/failed/{job_id}/remap")
        assert remap.status_code == 404 and f"finished at {ENDED}" in remap.text
    assert make_queue(rconn, "koppel").job_ids == []
