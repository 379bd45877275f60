"""Koppel on Redis Sentinel: `REDIS_URL=redis+sentinel://...` (gateway/redisclient.py) and the replica
acknowledgement (`[gateway] wait_replicas`, gateway/ingest.py).

The failover test runs real servers on loopback: a primary, two replicas and three sentinels
(tests/sentinel_support.py), a gateway under uvicorn and a `koppel worker` process, with webhooks streaming
in while the primary is killed (SIGKILL). Two replicas, so that the promoted one still has a replica to
acknowledge writes (with one, every batch waits for the old primary to come back: 503s meanwhile).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis

from gateway import keys, redisclient
from gateway.app import create_app
from gateway.cli import main
from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.ingest import inbox_key
from gateway.stack import serve
from tests.conftest import SECRETS, woo_headers, woo_order
from tests.sentinel_support import RedisGroup

SHOP = '[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n'
CONFIG_TOML = '[gateway]\nqueue = "{queue}"\nwait_replicas = 1\nworker_heartbeat_seconds = 1\n\n' + SHOP
QUEUE = "sentinel"


def shop_config(**gateway: object):
    return parse_config(
        {
            "gateway": {"queue": QUEUE, **gateway},
            "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
        },
        environ=SECRETS,
    )


# -- the URL ------------------------------------------------------------------------------------


def test_a_sentinel_url_names_its_sentinels_master_database_and_password():
    target = redisclient.sentinel_target("redis+sentinel://:s%40cret@10.0.0.1:26380,sentinel-b,[::1]:26381/mymaster/2")
    assert target == redisclient.SentinelTarget(
        sentinels=(("10.0.0.1", 26380), ("sentinel-b", 26379), ("::1", 26381)),
        service="mymaster",
        db=2,
        password="s@cret",
    )
    assert redisclient.sentinel_target("redis://localhost:6379/0") is None
    assert redisclient.sentinel_target("redis+sentinel://a,b/mymaster").db == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://a:26379,b:26379", "names no master"),
        ("redis+sentinel://a:26379,,b/mymaster", "empty sentinel address"),
        ("redis+sentinel://a:port/mymaster", "sentinel 'a:port' has no valid port"),
        ("redis+sentinel://a/mymaster/zero", "database 'zero' is not a number"),
        ("redis+sentinel://a/mymaster?socket_timeout=1", "takes no query"),
        ("http://redis:6379", "must start with redis://, rediss://, unix:// or redis+sentinel://"),
    ],
)
def test_config_check_names_what_is_wrong_with_redis_url(tmp_path, monkeypatch, capsys, url, problem):
    config = tmp_path / "koppel.toml"
    config.write_text(SHOP)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", url.replace("a", ":hunter2@a", 1) if "+sentinel://a" in url else url)
    assert main(["config", "check", str(config)]) == 2
    err = capsys.readouterr().err
    assert problem in err
    assert "hunter2" not in err


def test_config_check_accepts_a_sentinel_url(tmp_path, monkeypatch, capsys):
    config = tmp_path / "koppel.toml"
    config.write_text(CONFIG_TOML.format(queue=QUEUE))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://:pw@s1:26379,s2:26379,s3:26379/mymaster/0")
    assert main(["config", "check", str(config)]) == 0
    assert "config ok" in capsys.readouterr().out


def test_wait_settings_are_validated():
    with pytest.raises(ConfigError, match=r"gateway\.wait_replicas: Input should be greater than or equal to 0"):
        shop_config(wait_replicas=-1)
    with pytest.raises(ConfigError, match=r"gateway\.wait_timeout_ms: Input should be greater than or equal to 1"):
        shop_config(wait_timeout_ms=0)  # WAIT 0 would block for ever


# -- the replica acknowledgement ----------------------------------------------------------------


def post_order(client: httpx.Client, order_id: int) -> httpx.Response:
    body = woo_order(order_id)
    return client.post("/webhooks/shop", content=body, headers=woo_headers(body))


@pytest.mark.integration
def test_without_the_replicas_it_waits_for_an_event_is_answered_503_and_kept_for_the_retry(redis_url, rconn):
    live = serve(create_app(shop_config(wait_replicas=1, wait_timeout_ms=50, journal=False), redis_url))
    try:
        with httpx.Client(base_url=live.url, timeout=10) as client:
            refused = post_order(client, 1)
            assert refused.status_code == 503
            assert refused.headers["retry-after"]
            assert rconn.xlen(inbox_key(QUEUE)) == 1  # stored on the primary: the retry is answered as its duplicate
            again = post_order(client, 1)
            assert again.status_code == 503
            assert rconn.xlen(inbox_key(QUEUE)) == 1
    finally:
        live.stop()


@pytest.mark.integration
def test_without_the_replicas_it_waits_for_an_event_is_journaled_and_answered_2xx(redis_url, rconn, tmp_path):
    """With the journal (the default) a batch the replicas did not acknowledge is kept on the gateway's disk
    under the job id the answer names, and stored again (the primary's copy then recognised) until it is."""
    config = shop_config(wait_replicas=1, wait_timeout_ms=50, journal_dir=str(tmp_path / "journal"))
    live = serve(create_app(config, redis_url))
    try:
        with httpx.Client(base_url=live.url, timeout=10) as client:
            kept = post_order(client, 1)
            assert kept.status_code == 202
            assert kept.json()["journaled"] is True
            assert rconn.xlen(inbox_key(QUEUE)) == 1  # the primary has it; no replica acknowledged it
            ready = client.get("/readyz").json()
            assert ready["journal"]["pending"] >= 1
    finally:
        live.stop()


@pytest.fixture
def group(tmp_path: Path):
    servers = RedisGroup(tmp_path / "redis", replicas=2, sentinels=3)
    try:
        yield servers.start()
    finally:
        servers.stop()


def start_worker(tmp_path: Path, url: str) -> subprocess.Popen[bytes]:
    config = tmp_path / "koppel.toml"
    config.write_text(CONFIG_TOML.format(queue=QUEUE))
    with (tmp_path / "worker.log").open("ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
            env={**os.environ, **SECRETS, "REDIS_URL": url, "KOPPEL_LOG_LEVEL": "WARNING"},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


class Sender:
    """A webshop that keeps sending new orders, and resends one the gateway answered 5xx (as Shopify and
    Squarespace do; WooCommerce does not, which the gateway's disk journal is for)."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=10)
        self.statuses: Counter[int] = Counter()
        self.journaled = 0  # 2xx answers for events the gateway kept in its disk journal (Redis could not take them)
        self.acknowledged: dict[int, str | None] = {}  # order id → job id (None: answered as a duplicate)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="sender", daemon=True)

    def run(self) -> None:
        order = 0
        while not self.stop.is_set():
            order += 1
            while not self.stop.is_set():  # this order until it is acknowledged
                try:
                    response = post_order(self.client, order)
                except httpx.HTTPError:
                    self.statuses[0] += 1
                    time.sleep(0.05)
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code < 300:
                    self.journaled += bool(response.json().get("journaled"))
                    jobs = response.json()["jobs"]
                    self.acknowledged[order] = jobs[0] if jobs else None
                    break
                time.sleep(0.05)
            time.sleep(0.005)

    def until(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} orders acknowledged: {self.statuses}"
            time.sleep(0.02)


def job_status(connection: redis.Redis, job_id: str) -> str | None:
    status = connection.hget(f"rq:job:{job_id}", "status")
    return status.decode() if status else None


class Supervisor:
    """`koppel worker` restarted when it exits, as a process supervisor would (compose: `restart:`).

    A worker whose Redis drops while it finishes a job can exit (issue #13, item 2: another change makes it
    ride the outage out); the restarts are counted and printed."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp_path, self.url = tmp_path, url
        self.restarts = 0
        self.worker = start_worker(tmp_path, url)

    def check(self) -> None:
        if self.worker.poll() is not None:
            self.restarts += 1
            self.worker = start_worker(self.tmp_path, self.url)

    def stop(self) -> None:
        self.worker.kill()
        self.worker.wait()


@pytest.mark.integration
def test_gateway_and_worker_follow_a_failover_and_no_acknowledged_event_is_lost(tmp_path, group):
    live = serve(create_app(shop_config(wait_replicas=1, wait_timeout_ms=500), group.url))
    workers = Supervisor(tmp_path, group.url)
    sender = Sender(live.url)
    try:
        sender.thread.start()
        sender.until(60, timeout=30)
        primary = group.client(group.primary_port())
        deadline = time.monotonic() + 30
        while not done_orders(primary):  # the worker is up and working before the primary dies
            assert workers.worker.poll() is None and time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.1)
        primary.close()
        old = group.primary_port()
        last_before = max(sender.acknowledged)
        group.kill(old)
        acknowledged_before = len(sender.acknowledged)
        new = group.wait_for_failover(old)
        sender.until(acknowledged_before + 60, timeout=30)  # the gateway follows the failover
        sender.stop.set()
        sender.thread.join(timeout=15)

        primary = group.client(new)
        ids = {order: job for order, job in sender.acknowledged.items() if job is not None}
        deadline = time.monotonic() + 15
        while (pending := not_done(primary, sender.acknowledged)) and time.monotonic() < deadline:
            workers.check()
            time.sleep(0.2)  # the worker follows the failover too: every acknowledged event gets done

        lost = [order for order in pending if not stored(primary, order, ids.get(order))]
        print(f"\nfailover {old} -> {new}: {len(sender.acknowledged)} events acknowledged "
              f"({len(sender.acknowledged) - len(ids)} as duplicates of a 503-answered delivery), "
              f"answers {dict(sender.statuses)}, lost {len(lost)}, not done {len(pending)}, "
              f"worker restarts {workers.restarts}; not done: {states(primary, pending, ids)}")  # fmt: skip
        assert lost == []
        assert workers.restarts == 0  # the worker rides out the failover (workers/outage.py)
        # The last 30 events, accepted well after the failover, are all done: the worker follows it.
        recent = sorted(sender.acknowledged)[-30:]
        assert recent[0] > last_before
        assert [order for order in pending if order in recent] == []
        # the primary's death was seen: answered 503 and retried, or kept in the gateway's journal
        assert sender.statuses[503] + sender.statuses[0] + sender.journaled > 0
        assert set(sender.statuses) <= {202, 200, 503, 0}
        assert len(set(ids.values())) == len(ids)
        primary.close()
    finally:
        sender.stop.set()
        sender.client.close()
        live.stop()
        workers.stop()


@pytest.mark.integration
def test_the_gateways_batch_writer_follows_a_failover_on_its_own_connection(group):
    """Without `wait_replicas` the ingestor's writer task stores its batches on a connection of its own
    (gateway/ingest.py `_evalsha`), not through the client: it follows the failover as the client does, and
    what it acknowledges afterwards is on the new primary."""
    live = serve(create_app(shop_config(journal=False), group.url))
    sender = Sender(live.url)
    try:
        sender.thread.start()
        sender.until(30, timeout=30)
        old = group.primary_port()
        last_before = max(sender.acknowledged)
        group.kill(old)
        acknowledged_before = len(sender.acknowledged)
        new = group.wait_for_failover(old)
        sender.until(acknowledged_before + 30, timeout=30)  # the writer follows the failover
        sender.stop.set()
        sender.thread.join(timeout=15)
        primary = group.client(new)
        recent = sorted(sender.acknowledged)[-10:]
        assert recent[0] > last_before
        assert [order for order in recent if not stored(primary, order, sender.acknowledged[order])] == []
        assert set(sender.statuses) <= {202, 200, 503, 0}
        primary.close()
    finally:
        sender.stop.set()
        sender.client.close()
        live.stop()


def done_orders(connection: redis.Redis) -> dict[int, str]:
    """Order id → the job id of a finished job for it (the job's description: `shop order.created <id>`), or of
    the event the worker's inbox pump ran itself (its done record: `[gateway] direct_events`)."""
    done: dict[int, str] = {}
    for key in connection.scan_iter("rq:job:*", count=1000):
        description, status = connection.hmget(key, "description", "status")
        if status == b"finished" and description and description.startswith(b"shop order.created "):
            done[int(description.split()[-1])] = key.decode().removeprefix("rq:job:")
    for key in connection.scan_iter(keys.done("*"), count=1000):
        record = json.loads(connection.get(key) or b"{}")
        if record.get("description", "").startswith("shop order.created ") and record.get("resource_id"):
            done[int(record["resource_id"])] = record["id"]
    return done


def not_done(connection: redis.Redis, acknowledged: dict[int, str | None]) -> list[int]:
    """The acknowledged orders without a finished job (under the job id the 2xx answer named, when it named one)."""
    done = done_orders(connection)
    return [order for order, job in acknowledged.items() if order not in done or job not in (None, done[order])]


def states(connection: redis.Redis, orders: list[int], ids: dict[int, str]) -> dict[int, str | None]:
    return {order: job_status(connection, ids[order]) if order in ids else None for order in orders}


def stored(connection: redis.Redis, order: int, job_id: str | None) -> bool:
    """Whether an order not yet done is at least in the inbox or a job."""
    if job_id is not None and connection.exists(f"rq:job:{job_id}", keys.done(job_id)):
        return True
    return any(
        b'"id":%d,' % order in fields.get(b"e", b"") for _, fields in connection.xrange(inbox_key(QUEUE))
    )


def test_a_command_refuses_a_malformed_redis_url_before_connecting(tmp_path, monkeypatch, capsys):
    config = tmp_path / "koppel.toml"
    config.write_text(SHOP)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://:hunter2@s1:26379,s2:26379")
    assert main(["inbox", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "REDIS_URL names no master" in err
    assert "hunter2" not in err
