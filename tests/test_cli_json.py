"""`koppel ... --json`: one JSON document on stdout (and nothing else there), ISO 8601 UTC times, the command's
own exit code, and an `error` in the document of a run that fails. Every command through the CLI's `main`,
on a real Redis (and the Squarespace sandbox for the webhook commands)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import JobStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connectors import issued
from connectors.squarespace.sandbox import SandboxConfig, create_sandbox
from gateway import cli, keys, vault
from gateway.activity import Activity, ActivityLog
from gateway.envelope import Envelope, Event
from gateway.ingest import JOB_FUNC, Ingestor, make_queue
from gateway.redisserver import free_port
from gateway.stack import LiveServer, serve
from tests.samples import SECRETS
from tests.test_squarespace_cli import write_config
from workers.switches import switch_off, switched_off

pytestmark = pytest.mark.integration

DAY = 86400
QUEUE = "koppel"
INTEGRATION = "shop-to-exact"
JANE = "jane.doe@example.org"

CONFIG = """
[gateway]
admin_token = "env:ADMIN_TOKEN"

[[endpoints]]
id = "shop"
kind = "woocommerce"
secret = "env:WC_SECRET"

[[systems]]
id = "exact"
kind = "exactonline"
credentials = { client_secret = "env:EXACT_SECRET" }
settings = { client_id = "exact-app-1", redirect_uri = "https://koppel.example/oauth/exact/callback" }

[[integrations]]
id = "shop-to-exact"
source = "shop"
target = "exact"
flows = ["orders", "customers"]

[[integrations]]
id = "shop-to-exact-later"
source = "shop"
target = "exact"
flows = ["orders"]
enabled = false

[retention]
activity = "14d"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> str:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", redis_url)
    path = tmp_path / "koppel.toml"
    path.write_text(CONFIG)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    """`koppel ARGS --json`: the exit code, stdout parsed as one JSON document, stderr."""
    code = cli.main([*args, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def envelope(order_id: int, email: str = JANE) -> Envelope:
    payload = {"id": order_id, "billing": {"first_name": "Jane", "email": email}}
    event = Event(topic="order.created", resource="order", resource_id=str(order_id), delivery_key=f"d-{order_id}",
                  payload=payload)  # fmt: skip
    return Envelope.wrap(event, source="woocommerce", endpoint="shop")


def failed_job(rconn: redis.Redis, order_id: int) -> str:
    """A job of the shop's event that failed (in RQ's failed registry, as a worker leaves it)."""
    queue = make_queue(rconn, QUEUE)
    job = queue.enqueue(JOB_FUNC, envelope(order_id).model_dump(mode="json"), meta={"endpoint": "shop"})
    queue.remove(job.id)
    job.ended_at = datetime.now(UTC).replace(tzinfo=None)
    job.save()
    job.set_status(JobStatus.FAILED)
    queue.failed_job_registry.add(job, ttl=DAY, exc_string="PermanentError: SKU KOP-9 is not in Exact")
    return job.id


def logged(rconn: redis.Redis, resource_id: str, outcome: str, at: float, **fields: Any) -> None:
    """An activity entry, its stream id at `at` (as the log writes it then)."""
    entry = Activity(integration=INTEGRATION, flow="orders", topic="order.created", resource_id=resource_id,
                     outcome=outcome, received_at=at - 1.5, done_at=at, **fields)  # fmt: skip
    rconn.xadd(keys.activity(INTEGRATION), entry.fields(), id=f"{int(at * 1000)}-{resource_id}")  # type: ignore[arg-type]


# -- the config and what it holds ------------------------------------------------------------------------


def test_config_check_gives_the_ids_or_every_problem_with_its_key_path(config, tmp_path, capsys):
    code, doc, _ = run(capsys, "config", "check", config)
    assert code == 0
    assert doc == {"valid": True, "file": config, "problems": [], "endpoints": ["shop"], "systems": ["exact"],
                   "integrations": ["shop-to-exact", "shop-to-exact-later"]}  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace('activity = "14d"', 'activity = "soon"\njobs = -1'))
    code, doc, err = run(capsys, "config", "check", "--config", str(bad))
    assert code == 2 and "2 problem(s)" in err
    assert (doc["valid"], doc["file"], doc["error"]) == (False, str(bad), f"{bad}: 2 problem(s)")
    assert "endpoints" not in doc  # the ids of a valid config only
    assert len(doc["problems"]) == 2
    assert sorted(p.split(":")[0] for p in doc["problems"]) == ["retention.activity", "retention.jobs"]


def test_connectors_is_an_array_of_kinds(capsys):
    code, doc, _ = run(capsys, "connectors")
    assert code == 0
    woo = next(row for row in doc if row["kind"] == "woocommerce")
    assert woo["webhooks"] is True and "orders" in woo["gives"]


def test_integrations_give_the_config_s_fields_and_their_state(config, rconn, capsys):
    switch_off(rconn, INTEGRATION, "WooCommerce: the shop's keys were revoked")
    code, doc, _ = run(capsys, "integrations", "--config", config)
    assert code == 0
    assert doc == {"integrations": [
        {"id": INTEGRATION, "source": "shop", "target": "exact", "flows": ["orders", "customers"], "enabled": True,
         "state": "switched_off", "switched_off": "WooCommerce: the shop's keys were revoked"},
        {"id": "shop-to-exact-later", "source": "shop", "target": "exact", "flows": ["orders"], "enabled": False,
         "state": "disabled", "switched_off": None},
    ]}  # fmt: skip
    code, doc, _ = run(capsys, "integrations", "on", INTEGRATION, "--config", config)
    assert (code, doc) == (0, {"id": INTEGRATION, "state": "on",
                               "was_switched_off": "WooCommerce: the shop's keys were revoked"})  # fmt: skip
    assert switched_off(rconn, INTEGRATION) is None
    code, doc, _ = run(capsys, "integrations", "--config", config)
    assert doc["integrations"][0]["state"] == "on" and doc["integrations"][0]["switched_off"] is None
    code, doc, err = run(capsys, "integrations", "on", "nope", "--config", config)
    assert code == 2 and doc == {"error": "no integration 'nope' in the config; it has shop-to-exact, "
                                          "shop-to-exact-later"} and "no integration 'nope'" in err  # fmt: skip


# -- what happened ------------------------------------------------------------------------------------


def test_activity_gives_each_entry_s_fields_with_iso_times(config, rconn, capsys):
    now = time.time()
    logged(rconn, "100", "created", now - 3 * 3600)  # before --since
    logged(rconn, "101", "created", now - 120, number="1001", target_id="exact-guid-1", calls=3, job_id="job-1")
    logged(rconn, "102", "failed", now - 60, number="1002", reason=f"Exact refused {JANE}: SKU KOP-9", job_id="job-2")
    logged(rconn, "103", "created", now - 30, job_id="job-3")
    code, doc, _ = run(capsys, "activity", "--integration", INTEGRATION, "--config", config, "--since", "60")
    assert code == 0
    assert (doc["integration"], doc["since_minutes"], doc["outcome"]) == (INTEGRATION, 60, None)
    assert [e["resource_id"] for e in doc["entries"]] == ["101", "102", "103"]
    first = doc["entries"][0]
    assert first == {"integration": INTEGRATION, "flow": "orders", "topic": "order.created", "resource_id": "101",
                     "outcome": "created", "received_at": iso(now - 121.5), "done_at": iso(now - 120),
                     "number": "1001", "target_id": "exact-guid-1", "calls": 3, "reason": "", "job_id": "job-1",
                     "level": "", "latency": 1.5}  # fmt: skip
    assert datetime.fromisoformat(first["done_at"]).utcoffset() == timedelta(0)
    code, doc, _ = run(capsys, "activity", "--integration", INTEGRATION, "--config", config, "--outcome", "failed")
    [(job_id, reason)] = [(e["job_id"], e["reason"]) for e in doc["entries"]]
    assert job_id == "job-2" and reason.endswith(": SKU KOP-9") and JANE not in reason  # masked, as the admin API
    code, doc, _ = run(capsys, "activity", "--integration", INTEGRATION, "--config", config, "--limit", "1")
    assert [e["resource_id"] for e in doc["entries"]] == ["103"]
    code, doc, err = run(capsys, "activity", "--integration", "nope", "--config", config)
    assert code == 2 and doc == {"error": "no integration 'nope' in the config"} and "nope" in err


def test_inbox_gives_iso_times_and_an_unknown_job_is_an_error(config, rconn, capsys):
    before = time.time()
    [first, second] = Ingestor(rconn, queue_name=QUEUE).store([envelope(201), envelope(202)])
    code, doc, _ = run(capsys, "inbox", "--config", config)
    assert code == 0
    assert (doc["queue"], doc["depth"], doc["workers"]) == (QUEUE, 2, 0)
    assert [(e["job_id"], e["endpoint"], e["resource_id"], e["taken"]) for e in doc["entries"]] == [
        (first.job_id, "shop", "201", False), (second.job_id, "shop", "202", False)]  # fmt: skip
    stored = datetime.fromisoformat(doc["entries"][0]["stored_at"])
    assert stored.utcoffset() == timedelta(0) and before - 1 <= stored.timestamp() <= time.time()
    assert JANE not in json.dumps(doc)  # ids and times, no payload
    code, doc, err = run(capsys, "inbox", "--config", config, "--job", "no-such-job")
    assert code == 1 and doc["entries"] == [] and doc["depth"] == 2
    assert doc["error"].startswith("job no-such-job is not in the inbox of queue koppel") and "no-such-job" in err


def test_replay_dry_run_lists_what_it_would_requeue_and_replay_requeues_it(config, rconn, capsys):
    made = {failed_job(rconn, 301), failed_job(rconn, 302)}
    registry = make_queue(rconn, QUEUE).failed_job_registry
    ids = registry.get_job_ids()  # oldest failure first (to the second; then by id)
    assert set(ids) == made
    code, doc, _ = run(capsys, "replay", "--integration", INTEGRATION, "--dry-run", "--config", config)
    assert (code, doc) == (0, {"dry_run": True, "requeued": ids, "missing": [], "reasons": {}, "where": {},
                               "merged": {}})  # fmt: skip
    assert registry.get_job_ids() == ids  # a dry run requeues nothing
    assert cli.main(["replay", "--all", "--dry-run", "--config", config]) == 0  # and without --json: a list
    listed = "".join(f"\n  {job_id}" for job_id in ids)
    assert capsys.readouterr().out == f"would requeue 2 failed job(s) (dry run: nothing requeued){listed}\n"
    assert registry.get_job_ids() == ids
    code, doc, _ = run(capsys, "replay", "--job", "gone", "--job", ids[1], "--dry-run", "--config", config)
    assert (code, doc["requeued"], doc["missing"]) == (1, [ids[1]], ["gone"]) and registry.get_job_ids() == ids
    code, doc, err = run(capsys, "replay", "--job", ids[0], "--job", "gone", "--config", config)
    assert code == 1 and "job gone is not in the failed registry" in err
    assert doc == {"dry_run": False, "requeued": [ids[0]], "missing": ["gone"], "error": "1 job(s) not in the "
                   "failed registry", "reasons": {"gone": "no such job (finished and expired, or unknown)"},
                   "where": {"gone": {"job_id": "gone", "runs_as": "gone", "state": "unknown", "direct": False,
                                      "description": "", "ended_at": None, "worker": "", "result": None}},
                   "merged": {}}
    assert registry.get_job_ids() == [ids[1]] and ids[0] in make_queue(rconn, QUEUE).job_ids
    code, doc, _ = run(capsys, "replay", "--all", "--config", config)
    assert (code, doc) == (0, {"dry_run": False, "requeued": [ids[1]], "missing": [], "reasons": {}, "where": {},
                               "merged": {}})  # fmt: skip


def test_purge_reports_per_kind_with_its_retention(config, rconn, capsys):
    now = time.time()
    logged(rconn, "401", "created", now - 15 * DAY)
    logged(rconn, "402", "created", now - 13 * DAY)
    rconn.hset(keys.ledger(INTEGRATION, "orders"), "401", "exact-guid-401")
    code, doc, _ = run(capsys, "purge", "--config", config)
    assert code == 0
    assert doc["activity"] == {"removed": 1, "items": [f"{keys.activity(INTEGRATION)}: 1"], "note": "",
                               "retention_seconds": 14 * DAY}  # fmt: skip
    assert doc["failed_jobs"] == {"removed": 0, "items": [], "note": "", "retention_seconds": 30 * DAY}
    assert set(doc) == {"activity", "payloads", "jobs", "failed_jobs", "inbox", "untimed"}
    assert doc["untimed"]["ledger"] == 1
    assert rconn.xlen(keys.activity(INTEGRATION)) == 1


def test_forget_dry_run_reports_per_kind_and_removes_nothing(config, rconn, capsys):
    job_id = failed_job(rconn, 501)
    rconn.hset(keys.cache(INTEGRATION, "customers"), JANE, "acc-jane:f1")
    ActivityLog(rconn).record(Activity(integration=INTEGRATION, flow="orders", topic="order.created",
                                       resource_id="501", outcome="failed", received_at=time.time(),
                                       done_at=time.time(), job_id=job_id))  # fmt: skip
    code, doc, _ = run(capsys, "forget", "--email", JANE.upper(), "--dry-run", "--config", config)
    assert code == 0
    assert (doc["email"], doc["dry_run"], doc["waiting"]) == (JANE, True, [])
    assert doc["failed_jobs"] == {"removed": 1, "items": [job_id], "note": ""}
    assert doc["cached"]["removed"] == 1 and doc["activity"]["removed"] == 1 and doc["jobs"]["removed"] == 0
    assert set(doc) == {"email", "dry_run", "cached", "payloads", "failed_jobs", "jobs", "activity", "waiting"}
    assert make_queue(rconn, QUEUE).failed_job_registry.get_job_ids() == [job_id]  # nothing removed
    code, doc, err = run(capsys, "forget", "--email", "jane@", "--config", config)
    assert code == 2 and doc["error"].startswith("--email: not an e-mail address") and "--email" in err


# -- failures ---------------------------------------------------------------------------------------


def test_a_failure_before_any_output_is_an_error_document(config, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KOPPEL_CONFIG", raising=False)
    code, doc, _ = run(capsys, "integrations")
    assert code == 2
    assert doc == {"error": "koppel: 1 problem(s)", "source": "koppel",
                   "problems": ["no config file: pass --config PATH or set KOPPEL_CONFIG"]}  # fmt: skip
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")  # nothing listens there
    code, doc, err = run(capsys, "inbox", "--config", config)
    assert code == 1 and doc["error"].startswith("Redis did not take Koppel's connection")
    assert "hunter2" not in doc["error"] and "hunter2" not in err


def test_in_a_process_of_its_own_the_log_lines_go_to_stderr_and_stdout_is_the_document(config, rconn):
    ActivityLog(rconn).record(Activity(integration=INTEGRATION, flow="orders", topic="order.created",
                                       resource_id="601", outcome="created", received_at=time.time(),
                                       done_at=time.time()))  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "activity", "--integration", INTEGRATION, "--json",
                           "--config", config], capture_output=True, text=True, timeout=60, env=os.environ | {
                           "KOPPEL_LOG_LEVEL": "INFO"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [e["resource_id"] for e in json.loads(done.stdout)["entries"]] == ["601"]
    assert "INFO koppel: using" in done.stderr  # the Redis it uses: a log line, not part of the document


# -- the systems' webhooks (the Squarespace sandbox) ---------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[tuple[LiveServer, LiveServer, dict[str, int]]]:
    """The Squarespace sandbox, and a receiver that answers its test notifications with `answer["status"]`."""
    answer = {"status": 202}

    async def hook(request: Request) -> Response:
        return PlainTextResponse("ok", status_code=answer["status"])

    site = serve(create_sandbox(), name="Squarespace sandbox")
    receiver = serve(Starlette(routes=[Route("/webhooks/sq-hooks", hook, methods=["POST"])]), name="receiver")
    yield site, receiver, answer
    receiver.stop()
    site.stop()


def test_endpoints_sync_test_and_rotate_secret_give_each_webhook(sandbox, tmp_path, monkeypatch, redis_url, rconn,
                                                                  capsys):  # fmt: skip
    site, receiver, answer = sandbox
    for name, value in {"T_HOOK": "ab" * 32, "T_TOKEN": SandboxConfig.oauth_token, "REDIS_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    config = str(write_config(tmp_path / "k.toml", site.url, receiver.url))
    url = f"{receiver.url}/webhooks/sq-hooks"
    code, doc, _ = run(capsys, "endpoints", "sync", "--dry-run", "--config", config)
    assert code == 0 and doc["dry_run"] is True and doc["failures"] == []
    [plan] = doc["endpoints"]
    assert (plan["endpoint"], plan["system"], plan["url"], plan["in_sync"]) == ("sq-hooks", "sq", url, False)
    assert sorted((a["action"], a["topic"]) for a in plan["actions"]) == [
        ("create", "extension.uninstall"), ("create", "order.create"), ("create", "order.update")]  # fmt: skip
    assert issued.subscriptions(rconn, "sq-hooks") == set()  # a dry run creates nothing
    code, doc, _ = run(capsys, "endpoints", "sync", "--config", config)
    assert code == 0 and doc["dry_run"] is False and len(doc["endpoints"][0]["done"]) == 3

    code, doc, _ = run(capsys, "endpoints", "test", "sq-hooks", "--config", config)
    assert code == 0 and (doc["endpoint"], doc["url"]) == ("sq-hooks", url)
    outcomes = {hook["topic"]: (hook["outcome"], hook.get("status")) for hook in doc["webhooks"]}
    assert outcomes == {"order.create": ("answered", 202), "order.update": ("answered", 202),
                        "extension.uninstall": ("unsupported", None)}  # fmt: skip
    answer["status"] = 500  # the receiver fails the test: exit 1, and the document says which and why
    code, doc, err = run(capsys, "endpoints", "test", "sq-hooks", "--config", config)
    assert code == 1 and doc["error"] == "2 webhook(s) failed"
    assert sorted((h["outcome"], h.get("status")) for h in doc["webhooks"]) == [
        ("failed", 500), ("failed", 500), ("unsupported", None)]  # fmt: skip
    code, doc, _ = run(capsys, "endpoints", "rotate-secret", "sq-hooks", "--config", config)
    assert code == 0 and [hook["outcome"] for hook in doc["webhooks"]] == ["rotated"] * 3
    for raw in rconn.hgetall(issued.issued_key("sq-hooks")).values():
        entry = json.loads(vault.vault().open(raw, what="secret", fix="-"))
        assert entry["secret"] not in json.dumps(doc) and entry["previous"] not in json.dumps(doc)  # no secrets
    code, doc, err = run(capsys, "endpoints", "test", "nope", "--config", config)
    assert code == 2 and "no webhooks Koppel manages" in doc["error"] and "no webhooks Koppel manages" in err
