"""The embedded Redis: persistence, clean stop, no orphan, and when it is (not) started."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from gateway.errors import EmbeddedRedisError
from gateway.redisserver import (
    EmbeddedRedis,
    answers,
    embedded_password,
    free_port,
    local_url,
    redact_url,
    resolve_redis,
)

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_embedded_redis_persists_across_restart(tmp_path):
    server = EmbeddedRedis(data_dir=tmp_path, port=free_port())
    server.start()
    with redis.Redis.from_url(server.url) as client:
        client.set("koppel:test", "kept")
    server.stop()
    assert not answers(server.url)
    assert (tmp_path / "redis" / "appendonlydir").is_dir()
    server.start()
    try:
        with redis.Redis.from_url(server.url) as client:
            assert client.get("koppel:test") == b"kept"
    finally:
        server.stop()


def test_a_restarted_redis_is_handed_out_only_once_its_data_is_loaded(tmp_path):
    """A restart with data (the demo run again on its data dir) must not hand out a server that still
    replays its append-only file: it answers INFO then, and LOADING to everything else."""
    server = EmbeddedRedis(data_dir=tmp_path, port=free_port())
    server.start()
    with redis.Redis.from_url(server.url) as client:  # 500 000 commands in the AOF, written in a blink
        client.eval("for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'koppel:load:' .. i, 'x') end", 0, 500_000)
    server.stop()
    server.start()
    try:
        with redis.Redis.from_url(server.url) as client:
            assert client.dbsize() == 500_000  # not redis.BusyLoadingError
    finally:
        server.stop()


def test_embedded_redis_dies_with_a_killed_parent(tmp_path):
    port = free_port()
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from pathlib import Path
        from gateway.redisserver import EmbeddedRedis
        server = EmbeddedRedis(data_dir=Path({str(tmp_path)!r}), port={port})
        server.start()
        print(server.process.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "redis-server outlived the Koppel process that started it"
    assert not answers(local_url(port, embedded_password(tmp_path)))


def test_the_embedded_redis_refuses_clients_without_its_password(redis_server):
    password = embedded_password(redis_server.data_dir)
    assert password and f":{password}@" in redis_server.url
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as anonymous:
        anonymous.sendall(b"GET koppel:anything\r\n")
        assert anonymous.recv(100).startswith(b"-NOAUTH Authentication required")
    guessing = redis.Redis(host="127.0.0.1", port=redis_server.port, password="guessed")
    with guessing, pytest.raises(redis.AuthenticationError):
        guessing.ping()
    assert password not in repr(redis_server)
    cmdline = Path(f"/proc/{redis_server.process.pid}/cmdline").read_bytes()
    assert password.encode() not in cmdline  # `ps` shows every user the command line


def test_the_embedded_redis_keeps_its_files_owner_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    server = EmbeddedRedis(data_dir=data, port=free_port())
    server.start()
    try:
        with redis.Redis.from_url(server.url) as client:
            client.set("koppel:test", "x")
            client.bgsave()  # a snapshot file too, beside the append-only ones
            deadline = time.monotonic() + 10
            while not (data / "redis" / "dump.rdb").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        server.stop()
    made = [data, *data.rglob("*")]
    names = {path.name for path in made}
    assert {"appendonlydir", "dump.rdb", "redis.log", "password", "redis.conf"} <= names
    assert any(name.endswith(".aof") for name in names)
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"


def test_port_in_use_is_a_clear_error(tmp_path, redis_server):
    with pytest.raises(EmbeddedRedisError, match=f"port {redis_server.port} is already in use"):
        EmbeddedRedis(data_dir=tmp_path, port=redis_server.port).start(timeout=5)


def test_missing_binary_is_a_clear_error(tmp_path):
    with pytest.raises(EmbeddedRedisError, match="apt-get install redis-server"):
        EmbeddedRedis(data_dir=tmp_path, binary="no-such-redis-server").start()


def test_redis_url_is_used_and_nothing_is_started(redis_server):
    choice = resolve_redis(environ={"REDIS_URL": redis_server.url})
    assert choice.url == redis_server.url
    assert choice.embedded is None


def test_embedded_is_started_when_forced_and_stopped_by_its_owner(tmp_path):
    choice = resolve_redis(
        embedded=True, environ={"KOPPEL_DATA_DIR": str(tmp_path), "KOPPEL_REDIS_PORT": str(free_port())}
    )
    try:
        assert choice.embedded is not None
        assert answers(choice.url)
    finally:
        choice.stop()
    assert not answers(choice.url)


def test_passwords_are_redacted_from_urls():
    assert redact_url("redis://user:hunter2@redis.internal:6380/1") == "redis://user:***@redis.internal:6380/1"
    assert redact_url("redis://:hunter2@localhost:6379") == "redis://:***@localhost:6379"
    assert redact_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
