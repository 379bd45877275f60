"""The receiver's limits before authentication (gateway/limits.py), through real uvicorn on 127.0.0.1 with raw
sockets: header size (431), header and body read time (408), open connections (503), body cap (413), and
ordinary webhooks still accepted, also on a kept-alive connection."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.redisserver import free_port
from gateway.stack import LiveServer, serve
from tests.conftest import SECRETS, make_config, woo_headers, woo_order

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def request(path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def webhook(order_id: int) -> bytes:
    body = woo_order(order_id)
    return request("/webhooks/shop", body, woo_headers(body))


def connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers, body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed (EOF or reset), read until then; blocks up to the socket's timeout."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.fixture
def limited(redis_url: str) -> Iterator[LiveServer]:
    """The gateway with small limits, served as `koppel serve` serves it."""
    config = make_config(max_header_bytes=4096, header_timeout_seconds=1, body_timeout_seconds=1, max_connections=3)
    live = serve(create_app(config, redis_url), gateway=config.gateway)
    yield live
    live.stop()


def test_ordinary_webhooks_are_accepted_also_on_a_kept_alive_connection(limited, rconn):
    with connect(limited) as sock:
        for order_id in (1, 2, 3):
            sock.sendall(webhook(order_id))
            status, headers, _ = read_response(sock)
            assert status == 202
            assert headers.get("connection") != "close"


def test_headers_over_the_limit_are_431_and_the_connection_closed(limited):
    with connect(limited) as sock:
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 8192)
        status, headers, body = read_response(sock)
        assert status == 431
        assert headers["connection"] == "close"
        assert b"4096 bytes" in body
        assert closed_by_server(sock)


def test_headers_just_under_the_limit_are_accepted(limited):
    body = woo_order(5)
    unpadded = request("/webhooks/shop", body, {**woo_headers(body), "x-pad": ""})
    padding = 4096 - (len(unpadded) - len(body))  # the request line and headers: exactly 4096 bytes
    with connect(limited) as sock:
        sock.sendall(request("/webhooks/shop", body, {**woo_headers(body), "x-pad": "p" * padding}))
        status, _, _ = read_response(sock)
        assert status == 202


def test_slowloris_headers_are_408_and_the_connection_closed(limited):
    with connect(limited) as sock:
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\n")
        sent = 0
        # Dribble a header line a byte at a time until the server answers (it must, within its 1 s limit).
        while not select.select([sock], [], [], 0.1)[0]:
            sock.sendall(b"x-slow-%d: 1\r\n" % sent)
            sent += 1
            assert sent < 600, "no answer after a minute of dribbled headers"
        status, headers, body = read_response(sock)
        assert status == 408
        assert headers["connection"] == "close"
        assert b"headers" in body
        assert closed_by_server(sock)


def test_a_connection_that_sends_nothing_is_408_and_closed(limited):
    with connect(limited) as sock:
        status, _, _ = read_response(sock)
        assert status == 408
        assert closed_by_server(sock)


def test_a_dribbled_next_request_on_a_kept_alive_connection_is_408(limited, rconn):
    with connect(limited) as sock:
        sock.sendall(webhook(11))
        assert read_response(sock)[0] == 202
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\n")
        while not select.select([sock], [], [], 0.1)[0]:
            sock.sendall(b"x: y\r\n")
        assert read_response(sock)[0] == 408


def test_a_slow_body_is_408_and_nothing_is_queued(limited, rconn):
    body = woo_order(21)
    with connect(limited) as sock:
        head = request("/webhooks/shop", body, woo_headers(body))[: -len(body)]
        sock.sendall(head + body[:10])  # then nothing more
        status, headers, answer = read_response(sock)
        assert status == 408
        assert headers["connection"] == "close"
        assert b"body" in answer
        assert closed_by_server(sock)
    assert rconn.dbsize() == 0


def test_a_body_over_the_cap_is_413(limited, rconn):
    with connect(limited) as sock:
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % (10 * 1024 * 1024))
        status, _, answer = read_response(sock)
        assert status == 413
        assert b"65536" in answer
    with connect(limited) as sock:  # no Content-Length: refused once the chunks pass the cap
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        status = 0
        while not status:
            sock.sendall(b"4000\r\n" + b"a" * 0x4000 + b"\r\n")
            if select.select([sock], [], [], 0)[0]:
                status = read_response(sock)[0]
        assert status == 413
    assert rconn.dbsize() == 0


def test_connections_over_the_limit_are_503_with_retry_after(redis_url, rconn):
    config = make_config(max_connections=3, header_timeout_seconds=60)
    live = serve(create_app(config, redis_url), gateway=config.gateway)
    held = [connect(live) for _ in range(3)]
    try:
        for sock in held:
            sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\n")  # open, headers not complete
        with connect(live) as extra:
            extra.sendall(webhook(31))
            status, headers, _ = read_response(extra)
            assert status == 503
            assert headers["retry-after"].isdigit()
            assert closed_by_server(extra)
        held.pop().close()
        for _ in range(100):  # until the server has seen the close (503 meanwhile)
            with connect(live) as sock:
                sock.sendall(webhook(32))
                status = read_response(sock)[0]
            if status != 503:
                break
            time.sleep(0.1)
        assert status == 202
    finally:
        for sock in held:
            sock.close()
        live.stop()


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak RSS from /proc")
def test_a_64_mb_header_is_431_and_the_server_stays_small(redis_url, tmp_path):
    """Through `koppel serve` itself, in its own process, so its peak memory can be read."""
    config = tmp_path / "koppel.toml"
    config.write_text(
        '[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n\n'
        '[[systems]]\nid = "exact"\nkind = "exactonline"\n\n'
        '[[integrations]]\nid = "shop-to-exact"\nsource = "shop"\ntarget = "exact"\nflows = ["orders"]\n'
    )
    port = free_port()
    env = {**os.environ, **SECRETS, "REDIS_URL": redis_url, "PYTHONPATH": str(REPO)}
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    live = LiveServer(f"http://127.0.0.1:{port}", None, None)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                started = server.poll() is None and time.monotonic() < deadline
                assert started, f"koppel serve did not start: {(tmp_path / 'serve.log').read_text()}"
                time.sleep(0.1)
        with connect(live) as warm:  # one ordinary request first, so the baseline includes a request's memory
            warm.sendall(webhook(41))
            assert read_response(warm)[0] == 202
        before = _rss_peak_kib(server.pid)
        with connect(live) as sock:
            sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\nhost: x\r\nx-huge: ")
            chunk, sent = b"a" * 65536, 0
            try:
                while sent < 64 * 1024 * 1024 and not select.select([sock], [], [], 0)[0]:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            status, _, _ = read_response(sock)
        assert status == 431
        assert sent < 64 * 1024 * 1024, "the server read the whole 64 MB header before answering"
        grown = _rss_peak_kib(server.pid) - before
        print(f"peak RSS {before} KiB before, +{grown} KiB after a header of {sent} bytes was refused")
        assert grown < 50 * 1024, f"the server's peak memory grew by {grown} KiB"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_config_check_names_limits_out_of_range():
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        make_config(max_header_bytes=10, header_timeout_seconds=0, body_timeout_seconds=-1, max_connections=0)
    message = str(caught.value)
    for key in ("max_header_bytes", "header_timeout_seconds", "body_timeout_seconds", "max_connections"):
        assert f"gateway.{key}" in message


def test_the_open_file_limit_is_raised_for_max_connections_or_named_when_it_cannot_be():
    from gateway.limits import open_files_plan

    assert open_files_plan(1000, soft=1024, hard=524288) == (1064, None)  # raised within the hard limit
    assert open_files_plan(1000, soft=4096, hard=4096) == (None, None)
    assert open_files_plan(1000, soft=-1, hard=-1) == (None, None)
    raise_to, problem = open_files_plan(1000, soft=256, hard=1024)
    assert raise_to == 1024
    assert problem is not None and "max_connections (1000)" in problem and "ulimit -n" in problem
