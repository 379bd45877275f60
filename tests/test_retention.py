"""Personal data and retention: `[retention]` in the config, `koppel purge` (and the workers' scheduled
purge), `koppel forget --email`. Real Redis, real RQ jobs, the CLI's `main`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rq.job import Job, JobStatus

from gateway import keys
from gateway.activity import Activity
from gateway.cli import main
from gateway.config import load_config
from gateway.envelope import Envelope, Event
from gateway.ingest import JOB_FUNC, Ingestor, make_queue
from tests.samples import SECRETS
from workers.inbox import pump_for
from workers.retention import PURGE_LOCK, PurgeLoop
from workers.worker import run_worker

DAY = 86400
INTEGRATION = "shop-to-exact"
QUEUE = "koppel"
JANE, JOHN = "Jane.Doe@example.org", "john.roe@example.net"

CONFIG = """
[[endpoints]]
id = "shop"
kind = "woocommerce"
secret = "env:WC_SECRET"

[[systems]]
id = "exact"
kind = "exactonline"

[[integrations]]
id = "shop-to-exact"
source = "shop"
target = "exact"
flows = ["orders", "customers"]
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", redis_url)

    def write(retention: str = "") -> str:
        path = tmp_path / "koppel.toml"
        path.write_text(CONFIG + ("\n[retention]\n" + retention if retention else ""))
        return str(path)

    return write


# -- the config ----------------------------------------------------------------------------------------


def test_retention_takes_durations_and_has_defaults(config_file):
    config = load_config(config_file('activity = "14d"\npayloads = "12h"\njobs = 0\nfailed_jobs = "90m"'))
    retention = config.retention
    assert (retention.activity, retention.payloads, retention.jobs, retention.failed_jobs) == (14 * DAY, 12 * 3600, 0,
                                                                                               90 * 60)  # fmt: skip
    defaults = load_config(config_file()).retention
    assert (defaults.activity, defaults.payloads, defaults.jobs, defaults.failed_jobs, defaults.inbox) == (
        30 * DAY, 7 * DAY, DAY, 30 * DAY, 7 * DAY,
    )  # fmt: skip


def test_config_check_names_each_bad_retention_key(config_file, capsys):
    path = config_file('activity = "two weeks"\npayloads = "10s"\ninbox = -1\nlogs = "1d"')
    assert main(["config", "check", path]) == 2
    err = capsys.readouterr().err
    assert 'retention.activity: must be a duration such as "30d", "12h", "30m", "45s" or a number of seconds' in err
    assert "retention.payloads: must be at least 1m" in err
    assert "retention.inbox: must be a duration" in err
    assert "retention.logs: unknown key" in err


def test_the_old_gateway_job_ttls_still_work_but_not_beside_their_new_names(tmp_path, config_file, capsys):
    path = Path(config_file())
    path.write_text("[gateway]\nresult_ttl_seconds = 600\n" + path.read_text())
    assert load_config(path).retention.jobs == 600
    path.write_text(path.read_text() + '\n[retention]\njobs = "1h"\n')
    assert main(["config", "check", str(path)]) == 2
    assert "gateway.result_ttl_seconds: the old name of retention.jobs, which is given too" in capsys.readouterr().err


def test_jobs_made_from_the_inbox_carry_the_retention_ttls(config_file, rconn):
    """A worker's inbox pump makes each event's job with `jobs` / `failed_jobs` as its TTLs."""
    config = load_config(config_file('jobs = "2h"\nfailed_jobs = "3d"'))
    [accepted] = Ingestor(rconn, queue_name=QUEUE).store([envelope(1, JANE)])
    assert pump_for(rconn, config.gateway, config.retention).drain(timeout=10) == 1
    job = Job.fetch(accepted.job_id, connection=rconn, serializer=make_queue(rconn, QUEUE).serializer)
    assert (job.result_ttl, job.failure_ttl) == (2 * 3600, 3 * DAY)


# -- helpers: what Koppel holds, written as the gateway, the worker and the console write it ----------


def envelope(order_id: int, email: str, *, received_at: datetime | None = None) -> Envelope:
    payload = {"id": order_id, "number": str(order_id), "billing": {"first_name": "Jane", "email": email}}
    event = Event(topic="order.created", resource="order", resource_id=str(order_id), delivery_key=f"d-{order_id}",
                  payload=payload)  # fmt: skip
    return Envelope.wrap(event, source="woocommerce", endpoint="shop", received_at=received_at or datetime.now(UTC))


def ended_job(rconn, order_id: int, email: str, status: str, *, ended: datetime) -> str:
    """An event's job that finished or failed at `ended` (its envelope as argument, as the pump makes it)."""
    queue = make_queue(rconn, QUEUE)
    job = queue.enqueue(JOB_FUNC, envelope(order_id, email).model_dump(mode="json"), result_ttl=60 * DAY,
                        failure_ttl=60 * DAY)  # fmt: skip
    queue.remove(job.id)
    job.ended_at = ended.replace(tzinfo=None)
    job.save()
    if status == JobStatus.FAILED:
        job.set_status(JobStatus.FAILED)
        queue.failed_job_registry.add(job, ttl=60 * DAY, exc_string="PermanentError: SKU KOP-9 is not in Exact")
    else:
        job.set_status(JobStatus.FINISHED)
        queue.finished_job_registry.add(job, ttl=60 * DAY)
    return job.id


def activity(rconn, resource_id: str, *, job_id: str = "", flow: str = "orders", target_id: str = "",
             number: str = "", at: float | None = None) -> str:  # fmt: skip
    """An activity entry (at `at`, epoch s: its stream id says when it was logged)."""
    at = time.time() if at is None else at
    entry = Activity(integration=INTEGRATION, flow=flow, topic="order.created", resource_id=resource_id,
                     outcome="created", received_at=at, done_at=at, job_id=job_id, target_id=target_id,
                     number=number)  # fmt: skip
    entry_id = f"{int(at * 1000)}-{len(rconn.xrange(keys.activity(INTEGRATION)) or [])}"
    return rconn.xadd(keys.activity(INTEGRATION), entry.fields(), id=entry_id).decode()


def activity_ids(rconn) -> list[str]:
    return [entry_id.decode() for entry_id, _ in rconn.xrange(keys.activity(INTEGRATION))]


# -- koppel purge -------------------------------------------------------------------------------------


def test_purge_removes_what_is_older_than_the_retention_and_reports_it_per_kind(config_file, rconn, capsys):
    path = config_file('activity = "14d"\njobs = "1d"\nfailed_jobs = "30d"\npayloads = "7d"\ninbox = "1h"')
    now = datetime.now(UTC)
    old_entry = activity(rconn, "101", at=(now - timedelta(days=15)).timestamp())
    new_entry = activity(rconn, "102", at=(now - timedelta(days=13)).timestamp())
    old_done = ended_job(rconn, 101, JANE, JobStatus.FINISHED, ended=now - timedelta(days=2))
    new_done = ended_job(rconn, 102, JANE, JobStatus.FINISHED, ended=now - timedelta(hours=2))
    old_failed = ended_job(rconn, 103, JANE, JobStatus.FAILED, ended=now - timedelta(days=31))
    new_failed = ended_job(rconn, 104, JANE, JobStatus.FAILED, ended=now - timedelta(days=29))
    rconn.set(keys.snapshot(INTEGRATION, old_done), json.dumps({"email": JANE}))  # no TTL: written by hand
    rconn.set(keys.snapshot(INTEGRATION, new_done), "{}", ex=3600)
    rconn.set(keys.snapshot(INTEGRATION, new_failed), "{}", ex=30 * DAY)  # longer than the retention now
    stream = keys.inbox(QUEUE)
    rconn.xadd(stream, {"id": "waiting", "e": "{}"}, id=f"{int((now - timedelta(hours=3)).timestamp() * 1000)}-0")
    rconn.hset(keys.ledger(INTEGRATION, "orders"), "101", "exact-guid-101")

    assert main(["purge", "--config", path]) == 0
    out = capsys.readouterr().out
    assert "activity entries older than 14d: 1 removed" in out
    assert "finished jobs older than 1d: 1 removed" in out
    assert "failed jobs older than 30d: 1 removed" in out
    assert "payload snapshots older than 7d: expire by their TTL; 2 kept longer than the retention" in out
    assert "inbox: 1 event(s) waiting longer than the retention" in out and "never dropped" in out
    assert "ledger: 1 key(s): record number → target id" in out
    assert activity_ids(rconn) == [new_entry] and old_entry not in activity_ids(rconn)
    queue = make_queue(rconn, QUEUE)
    assert queue.finished_job_registry.get_job_ids() == [new_done] and not rconn.exists(Job.key_for(old_done))
    assert queue.failed_job_registry.get_job_ids() == [new_failed] and not rconn.exists(Job.key_for(old_failed))
    assert 0 < rconn.ttl(keys.snapshot(INTEGRATION, old_done)) <= 7 * DAY
    assert 0 < rconn.ttl(keys.snapshot(INTEGRATION, new_failed)) <= 7 * DAY
    assert rconn.ttl(keys.snapshot(INTEGRATION, new_done)) <= 3600  # within the retention: left as it was
    assert rconn.xlen(stream) == 1  # an event not yet processed is never dropped
    assert rconn.hget(keys.ledger(INTEGRATION, "orders"), "101") == b"exact-guid-101"


def test_a_worker_purges_at_start_and_one_worker_of_many_per_interval(config_file, rconn, redis_url):
    config = load_config(config_file('activity = "1d"'))
    old = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    activity(rconn, "201", at=old)
    run_worker(config, redis_url, burst=True)
    assert activity_ids(rconn) == []
    assert 0 < rconn.ttl(PURGE_LOCK) <= config.retention.purge_interval
    activity(rconn, "202", at=old + 1)  # the next worker within the interval leaves the purge to its turn
    run_worker(config, redis_url, burst=True)
    assert len(activity_ids(rconn)) == 1


def test_a_running_worker_s_purge_loop_purges_at_once_and_stops_when_told(config_file, rconn):
    config = load_config(config_file('activity = "1d"'))
    activity(rconn, "203", at=(datetime.now(UTC) - timedelta(days=2)).timestamp())
    loop = PurgeLoop(rconn, config, worker="w1").start()
    try:
        deadline = time.monotonic() + 10
        while activity_ids(rconn) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert activity_ids(rconn) == []
        assert rconn.get(PURGE_LOCK) == b"w1"
    finally:
        loop.close()
    assert not loop.thread.is_alive()


# -- koppel forget --------------------------------------------------------------------------------------


@pytest.fixture
def held(rconn):
    """What Koppel holds about Jane (and John, who must keep his): caches, jobs, snapshots, activity, inbox."""
    now = datetime.now(UTC)
    cache = keys.cache(INTEGRATION, "customers")
    rconn.hset(cache, mapping={JANE.lower(): "acc-jane:f1", JOHN: "acc-john:f2"})
    rconn.hset(keys.cache(INTEGRATION, "customers-sent"), JANE.lower(), json.dumps({"id": "acc-jane", "fields": {}}))
    rconn.hset(keys.cache("exact", "contacts"), mapping={"acc-jane": "contact-jane", "acc-john": "contact-john"})
    rconn.hset(keys.cache("exact", "delivery-addresses"), mapping={"acc-jane:ab12": "addr-1", "acc-john:cd34": "a2"})
    rconn.hset(keys.cache("exact", "items"), "KOP-1", "item-1")
    failed = ended_job(rconn, 301, JANE, JobStatus.FAILED, ended=now)
    done = ended_job(rconn, 302, JANE.upper(), JobStatus.FINISHED, ended=now)
    other = ended_job(rconn, 303, JOHN, JobStatus.FAILED, ended=now)
    lookalike = ended_job(rconn, 304, "x" + JANE, JobStatus.FINISHED, ended=now)  # another address that contains hers
    rconn.set(keys.snapshot(INTEGRATION, "job-305"), json.dumps({"billing": {"email": JANE}}), ex=DAY)
    rconn.set(keys.snapshot(INTEGRATION, other), json.dumps({"billing": {"email": JOHN}}), ex=DAY)
    entries = {
        "failed": activity(rconn, "301", job_id=failed),
        "updated": activity(rconn, "301", job_id="a-later-job"),  # the same order, another event
        "done": activity(rconn, "302", job_id=done),
        "snapshot": activity(rconn, "305", job_id="job-305"),
        "customer": activity(rconn, "c-9", flow="customers", target_id="acc-jane"),
        "named": activity(rconn, "c-8", flow="customers", number=JANE),  # older versions took it as the number
        "john": activity(rconn, "303", job_id=other),
    }
    [waiting] = Ingestor(rconn, queue_name=QUEUE).store([envelope(306, JANE)])
    return {"failed": failed, "done": done, "other": other, "lookalike": lookalike, "entries": entries,
            "waiting": waiting.job_id}  # fmt: skip


def test_forget_removes_what_koppel_holds_about_the_address_and_reports_it(config_file, rconn, held, capsys):
    path = config_file()
    assert main(["forget", "--email", f"  {JANE} ", "--config", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"forget {JANE.lower()}:")
    assert "cached ids: removed 4" in out
    assert "payload snapshots: removed 1" in out and keys.snapshot(INTEGRATION, "job-305") in out
    assert f"failed jobs: removed 1\n    {held['failed']}" in out
    assert f"finished jobs: removed 1\n    {held['done']}" in out
    assert "activity entries: removed 6" in out
    assert "inbox entry" in out and held["waiting"] in out and "not removed: 1 event(s) not yet processed" in out
    assert JOHN not in out and "Jane" not in out.replace(JANE.lower(), "")  # no one else's data, no other data

    assert rconn.hgetall(keys.cache(INTEGRATION, "customers")) == {JOHN.encode(): b"acc-john:f2"}
    assert rconn.hgetall(keys.cache(INTEGRATION, "customers-sent")) == {}
    assert rconn.hgetall(keys.cache("exact", "contacts")) == {b"acc-john": b"contact-john"}
    assert rconn.hgetall(keys.cache("exact", "delivery-addresses")) == {b"acc-john:cd34": b"a2"}
    assert rconn.hget(keys.cache("exact", "items"), "KOP-1") == b"item-1"
    queue = make_queue(rconn, QUEUE)
    assert queue.failed_job_registry.get_job_ids() == [held["other"]]
    assert queue.finished_job_registry.get_job_ids() == [held["lookalike"]]
    assert not rconn.exists(Job.key_for(held["failed"])) and not rconn.exists(Job.key_for(held["done"]))
    assert not rconn.exists(keys.snapshot(INTEGRATION, "job-305"))
    assert rconn.exists(keys.snapshot(INTEGRATION, held["other"]))
    assert activity_ids(rconn) == [held["entries"]["john"]]
    assert rconn.xlen(keys.inbox(QUEUE)) == 1  # not yet processed: kept, and reported


def test_forget_dry_run_shows_what_would_go_and_removes_nothing(config_file, rconn, held, capsys):
    before = {key: rconn.type(key) for key in rconn.scan_iter("*")}
    counts = (rconn.xlen(keys.activity(INTEGRATION)), rconn.hlen(keys.cache(INTEGRATION, "customers")))
    assert main(["forget", "--email", JANE, "--dry-run", "--config", config_file()]) == 0
    out = capsys.readouterr().out
    assert "(dry run: nothing removed)" in out
    assert "cached ids: would remove 4" in out and "activity entries: would remove 6" in out
    assert f"failed jobs: would remove 1\n    {held['failed']}" in out
    assert {key: rconn.type(key) for key in rconn.scan_iter("*")} == before
    assert (rconn.xlen(keys.activity(INTEGRATION)), rconn.hlen(keys.cache(INTEGRATION, "customers"))) == counts


def test_forget_of_an_address_koppel_does_not_know_removes_nothing(config_file, rconn, held, capsys):
    assert main(["forget", "--email", "nobody@example.com", "--config", config_file()]) == 0
    out = capsys.readouterr().out
    for kind in ("cached ids", "payload snapshots", "failed jobs", "finished jobs", "activity entries"):
        assert f"{kind}: removed 0" in out
    assert "not removed" not in out
    assert len(activity_ids(rconn)) == len(held["entries"])


@pytest.mark.parametrize("address", ["jane", "jane@", "@example.org", "jane doe@example.org", "jane@example", ""])
def test_forget_refuses_a_malformed_address(config_file, rconn, held, capsys, address):
    assert main(["forget", "--email", address, "--config", config_file()]) == 2
    assert "--email: not an e-mail address" in capsys.readouterr().err
    assert len(activity_ids(rconn)) == len(held["entries"])


# -- logs ---------------------------------------------------------------------------------------------------


def test_koppel_log_lines_mask_email_addresses_also_in_tracebacks():
    """The last line of defence: a system's error text or an exception that quotes an address (the flows'
    own lines name records by ids and numbers: tests/test_privacy_e2e.py)."""
    code = (
        "import logging, sys\n"
        "from gateway.cli import main\n"
        "main(['connectors', '--json'])\n"
        "log = logging.getLogger('koppel.test')\n"
        f"log.warning('customer %s rejected', {JANE!r})\n"
        "try:\n"
        f"    raise ValueError('Exact says: {JOHN} exists')\n"
        "except ValueError:\n"
        "    log.exception('failed')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "customer <e-mail> rejected" in done.stderr and "ValueError: Exact says: <e-mail> exists" in done.stderr
    assert JANE not in done.stderr and JOHN not in done.stderr
