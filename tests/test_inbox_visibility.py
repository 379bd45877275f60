"""Accepted events are visible to operators before any worker runs.

The gateway stores an accepted event in the inbox stream and answers with its job id; only a worker's
pump makes it an RQ job (docs/architecture.md). Until then `koppel inbox` lists it under that id,
`koppel replay --job ID` says where it is, and /metrics shows the backlog and how long it has waited.
"""

from __future__ import annotations

import json
import re

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from gateway.cli import main
from gateway.ingest import find_in_inbox, inbox_view
from tests.conftest import SECRETS, woo_headers, woo_order
from workers.inbox import InboxPump

pytestmark = pytest.mark.integration


@pytest.fixture
def config_file(tmp_path, monkeypatch, redis_url):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", redis_url)
    path = tmp_path / "koppel.toml"
    path.write_text('[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n')
    return str(path)


def deliver(http, order_id: int) -> str:
    body = woo_order(order_id)
    response = http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    assert response.status_code == 202, response.text
    (job_id,) = response.json()["jobs"]
    return str(job_id)


def test_an_accepted_event_is_listed_under_its_job_id_while_no_worker_runs(http, rconn, config_file, capsys):
    first, second = deliver(http, 101), deliver(http, 102)
    assert main(["inbox", "--config", config_file]) == 0
    out = capsys.readouterr().out
    assert "inbox of queue koppel: 2 accepted event(s) no worker has taken yet" in out
    assert "no worker runs on this queue: start `koppel worker`" in out
    assert first in out and second in out and "order.created" in out and "101" in out
    assert "jorg@example.com" not in out and "J\u00f6rg" not in out  # ids and times only, no payload
    assert main(["inbox", "--config", config_file, "--job", second, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["depth"] == 2 and listed["workers"] == 0
    assert [(e["job_id"], e["resource_id"], e["taken"]) for e in listed["entries"]] == [(second, "102", False)]


def test_replay_of_a_job_still_in_the_inbox_says_where_it_is(http, config_file, capsys):
    job_id = deliver(http, 103)
    assert main(["replay", "--config", config_file, "--job", job_id]) == 1
    err = capsys.readouterr().err
    assert f"job {job_id} is not in the failed registry: it is in the inbox" in err
    assert "shop order.created 103" in err and "not yet taken by a worker" in err


def test_metrics_show_the_backlog_and_how_long_it_waited(http):
    deliver(http, 104)
    text = http.get("/metrics").text
    assert re.search(r'^koppel_inbox_depth\{queue="koppel"\} 1\.0$', text, re.MULTILINE), text
    age = re.search(r'^koppel_inbox_oldest_seconds\{queue="koppel"\} (\S+)$', text, re.MULTILINE)
    assert age and float(age.group(1)) >= 0, text


def test_once_a_pump_made_it_a_job_the_same_id_is_an_rq_job_and_the_inbox_is_empty(http, rconn, config_file, capsys):
    job_id = deliver(http, 105)
    assert find_in_inbox(rconn, "koppel", job_id) is not None
    InboxPump(rconn, "koppel").drain(timeout=10)  # what a worker's pump does
    assert Queue("koppel", connection=rconn, serializer=JSONSerializer).job_ids == [job_id]
    assert find_in_inbox(rconn, "koppel", job_id) is None and inbox_view(rconn, "koppel").depth == 0
    assert main(["inbox", "--config", config_file, "--job", job_id]) == 1
    assert "a worker made it an RQ job already" in capsys.readouterr().err
    assert main(["replay", "--config", config_file, "--job", job_id]) == 1
    assert "it is queued, not failed" in capsys.readouterr().err


def test_find_in_inbox_pages_through_a_long_backlog(rconn):
    stream = "koppel:inbox:koppel"
    for n in range(25):
        envelope = {"endpoint": "shop", "topic": "order.created", "resource_id": str(n), "received_at": "t"}
        rconn.xadd(stream, {"id": f"job-{n}", "e": json.dumps(envelope)})
    found = find_in_inbox(rconn, "koppel", "job-23", page=10)
    assert found is not None and found.resource_id == "23"
    assert find_in_inbox(rconn, "koppel", "job-99", page=10) is None
    view = inbox_view(rconn, "koppel", limit=3)
    assert view.depth == 25 and [e.job_id for e in view.entries] == ["job-0", "job-1", "job-2"]
