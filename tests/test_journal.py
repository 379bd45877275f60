"""The gateway's local journal (gateway/journal.py): events Redis cannot take are kept on disk, answered
2xx, and drained into Redis in order once it is back — nothing lost, nothing twice, also across a crash."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import gateway.app
from gateway import keys
from gateway.app import create_app
from gateway.envelope import Envelope, Event
from gateway.ingest import Draft, Ingestor
from gateway.journal import SUFFIX, Journal, JournalUnavailable, Record, decode, encode
from gateway.redisserver import EmbeddedRedis, free_port
from gateway.stack import serve
from tests.conftest import woo_headers, woo_order
from tests.samples import SECRETS, make_config

STREAM = keys.inbox("koppel")
DEADLINE = 60.0


def envelope(n: int) -> Envelope:
    event = Event(topic="order.created", resource="order", resource_id=str(n), delivery_key=f"d-{n}", payload={"n": n})
    return Envelope.wrap(event, source="woocommerce", endpoint="shop")


def inbox(conn: redis.Redis) -> list[tuple[str, str]]:
    """(resource id, job id) of every inbox entry, oldest first."""
    rows = conn.xrange(STREAM)
    return [(json.loads(fields[b"e"])["resource_id"], fields[b"id"].decode()) for _, fields in rows]


def dedupe_marks(conn: redis.Redis) -> int:
    return sum(1 for _ in conn.scan_iter(match=keys.DEDUPE + "*", count=1000))


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)


# -- the record encoding --------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
records = st.builds(Record, texts, texts, texts, texts, st.binary(max_size=300))


@given(st.lists(records, max_size=6), st.data())
def test_records_decode_as_encoded_and_a_cut_keeps_exactly_the_whole_ones(items, data):
    encoded = [encode(r) for r in items]
    blob = b"".join(encoded)
    found = decode(blob)
    assert [r for _, _, r in found.records] == items
    assert found.damaged == []
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    truncated = decode(blob[:cut])
    whole, boundary = 0, 0
    for chunk in encoded:
        if boundary + len(chunk) > cut:
            break
        boundary += len(chunk)
        whole += 1
    assert [r for _, _, r in truncated.records] == items[:whole]
    assert truncated.damaged == ([(boundary, cut)] if cut > boundary else [])
    # read as a window of a longer file (not final): the cut record is left for the next read
    window = decode(blob[:cut], final=False)
    assert [r for _, _, r in window.records] == items[:whole]
    assert window.end == boundary and window.damaged == []


@given(st.lists(records, min_size=2, max_size=5), st.data())
def test_a_damaged_record_is_skipped_and_the_ones_after_it_still_decode(items, data):
    encoded = [bytearray(encode(r)) for r in items]
    victim = data.draw(st.integers(0, len(items) - 1), label="victim")
    byte = data.draw(st.integers(2, len(encoded[victim]) - 1), label="byte")  # past the magic
    encoded[victim][byte] ^= 0xFF
    found = decode(b"".join(encoded))
    kept = [r for _, _, r in found.records]
    assert kept == items[:victim] + items[victim + 1 :]
    assert len(found.damaged) == 1


# -- the journal against a real Redis -------------------------------------------------------------


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def drafts(numbers: range) -> list[Draft]:
    return [Draft.of(envelope(n)) for n in numbers]


async def until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(0.02)


def test_a_crash_after_storing_but_before_committing_stores_nothing_twice(rconn, tmp_path):
    """The crash window of the drain: the events are in Redis, the offset not yet committed. Replayed
    from the copy of the journal taken before the drain: same job ids, each entry once."""
    directory = tmp_path / "journal"
    journal = Journal(directory)
    journal.append(
        [Record(STREAM, f"{n:032x}", d.endpoint, d.dedupe_key, d.json) for n, d in enumerate(drafts(range(20)))]
    )
    journal.close()  # as a killed process: its lock gone, its file an orphan
    before = tmp_path / "copy"
    shutil.copytree(directory, before)

    async def drain(path: Path) -> None:
        ingestor = Ingestor(rconn, batch_max=7, journal=Journal(path))
        await ingestor.start()
        try:
            await until(lambda: not list(path.glob("*" + SUFFIX)), "the journal drained")
        finally:
            await ingestor.stop()

    run(drain(directory))
    assert [rid for rid, _ in inbox(rconn)] == [str(n) for n in range(20)]
    assert not list(directory.glob("*" + SUFFIX))
    shutil.rmtree(directory)
    before.rename(directory)
    run(drain(directory))
    entries = inbox(rconn)
    assert [rid for rid, _ in entries] == [str(n) for n in range(20)]
    assert [job for _, job in entries] == [f"{n:032x}" for n in range(20)]
    assert dedupe_marks(rconn) == 20
    assert not list(directory.glob("*" + SUFFIX))


def test_a_torn_last_record_is_skipped_with_one_log_line_and_the_rest_drained(rconn, tmp_path, caplog):
    directory = tmp_path / "journal"
    journal = Journal(directory)
    items = drafts(range(5))
    journal.append([Record(STREAM, f"{n:032x}", d.endpoint, d.dedupe_key, d.json) for n, d in enumerate(items)])
    journal.close()
    (path,) = directory.glob("*" + SUFFIX)
    with path.open("r+b") as file:  # the last record cut short, as by a crash in the middle of its write
        file.truncate(path.stat().st_size - 10)
    caplog.set_level(logging.INFO, logger="koppel.journal")

    async def drain() -> None:
        ingestor = Ingestor(rconn, journal=Journal(directory))
        await ingestor.start()
        try:
            await until(lambda: not list(directory.glob("*" + SUFFIX)), "the journal drained")
        finally:
            await ingestor.stop()

    run(drain())
    assert [rid for rid, _ in inbox(rconn)] == ["0", "1", "2", "3"]
    damaged = [r for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damaged) == 1
    assert "skipped" in damaged[0].getMessage()


def test_a_journal_nobody_holds_is_left_to_the_live_process_that_holds_it(tmp_path):
    """Each process its own file: a live writer's lock keeps other processes' drains off it."""
    directory = tmp_path / "journal"
    writer = Journal(directory)
    writer.append([Record(STREAM, "a" * 32, "shop", "k", b"{}")])
    other = Journal(directory)
    assert other.adopt_orphans() == 0
    writer.close()
    assert other.adopt_orphans() == 1
    assert other.pending == 1
    other.close()


def test_an_unwritable_journal_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    journal = Journal(blocker / "journal")
    assert journal.usable() is not None
    with pytest.raises(JournalUnavailable):
        journal.append([Record(STREAM, "a" * 32, "shop", "k", b"{}")])
    assert "did not take events" in (journal.usable() or "")


# -- through the real gateway ---------------------------------------------------------------------


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir=tmp_path / "redis-data", port=free_port())
    server.start()
    yield server
    server.stop()


def post(http: httpx.Client, n: int) -> httpx.Response:
    body = woo_order(n)
    return http.post("/webhooks/shop", content=body, headers=woo_headers(body))


@pytest.mark.integration
def test_deliveries_during_a_redis_outage_are_answered_2xx_and_stored_once_in_order(throwaway_redis, tmp_path):
    server = throwaway_redis
    directory = tmp_path / "journal"
    live = serve(create_app(make_config(journal_dir=str(directory), enqueue_batch_max=4), server.url))
    conn = redis.Redis.from_url(server.url)
    answered: list[str] = []
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            for n in range(1, 6):
                response = post(http, n)
                assert response.status_code == 202 and "journaled" not in response.json()
                answered += response.json()["jobs"]
            server.stop()
            for n in range(6, 31):
                response = post(http, n)
                assert response.status_code == 202
                assert response.json()["journaled"] is True
                answered += response.json()["jobs"]
            ready = http.get("/readyz")
            assert ready.status_code == 200  # still accepting: stays routable
            assert ready.json()["status"] == "degraded"
            assert ready.json()["journal"] == {"in_use": True, "pending": 25, "writable": True}
            text = http.get("/metrics").text
            assert "koppel_journal_in_use 1.0" in text
            assert "koppel_journal_pending_events 25.0" in text

            server.start()
            for n in range(31, 41):  # while the journal drains: after the journaled ones, never before
                response = post(http, n)
                assert response.status_code == 202
                answered += response.json()["jobs"]
            wait_for(lambda: http.get("/readyz").json()["status"] == "ready", "the journal drained")
            text = http.get("/metrics").text
            assert "koppel_journal_in_use 0.0" in text
            assert "koppel_journal_pending_events 0.0" in text
            drained = next(line for line in text.splitlines() if line.startswith("koppel_journal_drained_total"))
            assert float(drained.split()[-1]) >= 25
            response = post(http, 41)  # the journal is empty again: straight to Redis
            assert response.status_code == 202 and "journaled" not in response.json()
            answered += response.json()["jobs"]
        entries = inbox(conn)
        assert [rid for rid, _ in entries] == [str(n) for n in range(1, 42)]
        assert [job for _, job in entries] == answered
        assert dedupe_marks(conn) == 41
        assert not list(directory.glob("*" + SUFFIX))
    finally:
        conn.close()
        live.stop()


@pytest.mark.integration
def test_neither_redis_nor_the_disk_can_take_it_answers_503(throwaway_redis, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the journal's directory should be")
    live = serve(create_app(make_config(journal_dir=str(blocker / "journal")), throwaway_redis.url))
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            throwaway_redis.stop()
            response = post(http, 7)
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) > 0
            assert "nothing was queued" in response.json()["message"]
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["journal"]["writable"] is False
    finally:
        live.stop()


def _gateway(config: Path, port: int, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **SECRETS, "REDIS_URL": redis_url, "KOPPEL_LOG_LEVEL": "INFO"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.integration
def test_a_gateway_killed_mid_drain_loses_nothing_and_stores_nothing_twice(throwaway_redis, tmp_path):
    server = throwaway_redis
    directory = tmp_path / "journal"
    config = tmp_path / "koppel.toml"
    config.write_text(
        f'[gateway]\njournal_dir = "{directory}"\nenqueue_batch_max = 4\n\n'
        '[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n'
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gateway.log"
    count = 400
    conn = redis.Redis.from_url(server.url)
    first = _gateway(config, port, server.url, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: _up(url), "the gateway started")
        # Redis refuses every write (out of memory): the events are journaled
        conn.config_set("maxmemory-policy", "noeviction")
        conn.config_set("maxmemory", 1)
        answered: list[str] = []
        with httpx.Client(base_url=url, timeout=15) as http:
            for n in range(1, count + 1):
                response = post(http, n)
                assert response.status_code == 202 and response.json()["journaled"] is True
                answered += response.json()["jobs"]
        # room for some of them (~1 KB each in Redis): the drain stores those, then stalls on OOM
        conn.config_set("maxmemory", int(conn.info("memory")["used_memory"]) + 100_000)
        wait_for(lambda: conn.xlen(STREAM) > 0, "the drain began")
        os.killpg(first.pid, signal.SIGKILL)  # mid-drain
        first.wait()
        assert 0 < conn.xlen(STREAM) < count
        assert list(directory.glob("*" + SUFFIX))  # the dead gateway's file, not drained to its end
        conn.config_set("maxmemory", 0)
        second = _gateway(config, port, server.url, log)
        wait_for(lambda: not list(directory.glob("*" + SUFFIX)), "the restarted gateway drained the orphan")
        entries = inbox(conn)
        assert [rid for rid, _ in entries] == [str(n) for n in range(1, count + 1)]
        assert [job for _, job in entries] == answered
        assert dedupe_marks(conn) == count
    finally:
        conn.close()
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)


@pytest.mark.integration
def test_an_endpoint_with_issued_secrets_journals_with_the_copy_it_holds(throwaway_redis, tmp_path, monkeypatch):
    """Squarespace's issued secrets are read from Redis; while Redis is away the copy held still verifies."""
    monkeypatch.setattr(gateway.app, "ISSUED_SECRETS_SECONDS", 0.0)  # every request would read them again
    live = serve(create_app(make_config(journal_dir=str(tmp_path / "journal")), throwaway_redis.url))

    def notification(n: int) -> tuple[bytes, dict[str, str]]:
        fields = {"id": f"n-{n}", "websiteId": "w", "subscriptionId": "s", "topic": "order.create"}
        body = json.dumps(fields | {"createdOn": "2026-03-14T13:05:41.512Z", "data": {"orderId": f"o-{n}"}}).encode()
        signature = hmac.new(bytes.fromhex(SECRETS["SQ_SECRET"]), body, hashlib.sha256).hexdigest()
        return body, {"content-type": "application/json", "squarespace-signature": signature}

    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            body, headers = notification(1)
            assert http.post("/webhooks/sq", content=body, headers=headers).status_code == 202
            throwaway_redis.stop()
            body, headers = notification(2)
            response = http.post("/webhooks/sq", content=body, headers=headers)
            assert response.status_code == 202
            assert response.json()["journaled"] is True
    finally:
        live.stop()


@pytest.mark.integration
def test_two_gateways_on_one_journal_dir_each_journal_their_own_and_drain_everything_once(throwaway_redis, tmp_path):
    server = throwaway_redis
    directory = tmp_path / "journal"
    gateways = [serve(create_app(make_config(journal_dir=str(directory)), server.url)) for _ in range(2)]
    conn = redis.Redis.from_url(server.url)
    try:
        server.stop()
        sent: dict[str, list[str]] = {}
        for index, live in enumerate(gateways):
            with httpx.Client(base_url=live.url, timeout=15) as http:
                for n in range(index * 100 + 1, index * 100 + 21):
                    response = post(http, n)
                    assert response.status_code == 202 and response.json()["journaled"] is True
                    sent.setdefault(live.url, []).append(str(n))
        assert len(list(directory.glob("*" + SUFFIX))) == 2  # one file per process
        server.start()
        wait_for(lambda: not list(directory.glob("*" + SUFFIX)), "both journals drained")
        stored = [rid for rid, _ in inbox(conn)]
        assert sorted(stored) == sorted(rid for rids in sent.values() for rid in rids)
        for rids in sent.values():  # each gateway's events in the order it received them
            assert [rid for rid in stored if rid in rids] == rids
        assert dedupe_marks(conn) == 40
    finally:
        conn.close()
        for live in gateways:
            live.stop()


@pytest.mark.integration
def test_a_gateway_started_while_redis_is_down_accepts_and_drains_later(throwaway_redis, tmp_path):
    server = throwaway_redis
    server.stop()
    live = serve(create_app(make_config(journal_dir=str(tmp_path / "journal")), server.url))
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            response = post(http, 5)
            assert response.status_code == 202 and response.json()["journaled"] is True
            server.start()
            wait_for(lambda: http.get("/readyz").json()["status"] == "ready", "the journal drained")
        conn = redis.Redis.from_url(server.url)
        assert inbox(conn) == [("5", response.json()["jobs"][0])]
        conn.close()
    finally:
        live.stop()


@pytest.mark.integration
def test_a_full_journal_disk_with_redis_down_answers_503_and_keeps_what_it_acknowledged(throwaway_redis, tmp_path):
    """"Full" as the kernel says it for a file size limit (RLIMIT_FSIZE: EFBIG; Python ignores SIGXFSZ):
    the write cut short is undone, the answer is 503, and every 2xx'd event is drained once."""
    import resource

    server = throwaway_redis
    directory = tmp_path / "journal"
    live = serve(create_app(make_config(journal_dir=str(directory)), server.url))
    conn = redis.Redis.from_url(server.url)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            server.stop()
            first = post(http, 1)
            assert first.status_code == 202 and first.json()["journaled"] is True
            (path,) = directory.glob("*" + SUFFIX)
            resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 100, hard))
            try:
                refused = post(http, 2)
                ready = http.get("/readyz")
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            assert refused.status_code == 503
            assert "nothing was queued" in refused.json()["message"]
            assert ready.status_code == 503
            assert "did not take events" in ready.json()["journal"]["problem"]
            third = post(http, 3)  # room again
            assert third.status_code == 202 and third.json()["journaled"] is True
            server.start()
            wait_for(lambda: http.get("/readyz").json()["status"] == "ready", "the journal drained")
            assert "koppel_journal_damaged_total 0.0" in http.get("/metrics").text  # the cut write was undone
        assert [rid for rid, _ in inbox(conn)] == ["1", "3"]
    finally:
        conn.close()
        live.stop()


@pytest.mark.integration
def test_uvicorn_workers_each_journal_their_own_file_and_all_is_drained_once(throwaway_redis, tmp_path):
    server = throwaway_redis
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "KOPPEL_BENCH_REDIS_URL": server.url, "KOPPEL_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "uvicorn", "--factory", "bench.ingest.apps:koppel_app", "--workers", "2",
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with (tmp_path / "uvicorn.log").open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    directory = tmp_path / "data" / "journal"
    conn = redis.Redis.from_url(server.url)
    try:
        wait_for(lambda: _up(url), "the workers started")
        server.stop()
        for n in range(1, 41):
            with httpx.Client(base_url=url, timeout=15) as http:  # a connection each: spread over the workers
                response = post(http, n)
            assert response.status_code == 202 and response.json()["journaled"] is True
        files = list(directory.glob("*" + SUFFIX))
        assert 1 <= len(files) <= 2 and len({f.name.split("-")[1] for f in files}) == len(files)  # one per pid
        server.start()
        wait_for(lambda: not list(directory.glob("*" + SUFFIX)), "every worker drained its journal")
        assert sorted(int(rid) for rid, _ in inbox(conn)) == list(range(1, 41))
        assert dedupe_marks(conn) == 40
    finally:
        conn.close()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
