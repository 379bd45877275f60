"""Personal data end to end: the main job (WooCommerce ⇄ Exact Online, every phase of `koppel demo`) runs with
the gateway and worker logging at INFO; no customer's e-mail address, name, phone or street may appear in
any log line. Then `koppel forget --email` leaves no trace of that customer's address anywhere in Redis."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rich.console import Console

from gateway.demo import options_for
from gateway.pairs import Run, pair_named
from gateway.stack import Stack

pytestmark = pytest.mark.integration

PERSONAL = {
    "billing": ("email", "first_name", "last_name", "phone", "address_1", "address_2"),
    "shipping": ("first_name", "last_name", "phone", "address_1", "address_2"),
}


@pytest.fixture(scope="module")
def main_job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, bool]]:
    pair = pair_named("woocommerce-exactonline")
    options = dataclasses.replace(options_for(pair, tmp_path_factory.mktemp("privacy")), log_level="INFO",
                                  exact_rate_limits=False)  # fmt: skip
    with Stack(options, pair) as stack:
        run = Run(stack, Console(file=io.StringIO(), width=160), 4)
        healthy = all([phase.run(run) for phase in stack.pair.phases])
        yield stack, healthy


def personal_values(stack: Stack) -> dict[str, set[str]]:
    """What the shop holds about its customers: per kind, every value (e-mail addresses lower-cased)."""
    client = stack.woo_client()
    found: dict[str, set[str]] = {}
    records: list[dict[str, Any]] = [*client.orders(), *client.customers()]
    for record in records:
        for part, names in PERSONAL.items():
            address = record.get(part) or {}
            for name in names:
                value = str(address.get(name) or "").strip()
                if len(value) >= 3:
                    found.setdefault(name, set()).add(value.lower() if name == "email" else value)
        for name in ("email", "first_name", "last_name", "username"):
            value = str(record.get(name) or "").strip()
            if len(value) >= 3:
                found.setdefault(name, set()).add(value.lower() if name == "email" else value)
    return found


def test_no_personal_data_in_any_log_line(main_job):
    stack, healthy = main_job
    assert healthy
    values = personal_values(stack)
    assert len(values["email"]) >= 3 and values["last_name"] and values["address_1"] and values["phone"]
    logs = sorted(stack.log_dir.glob("*.log"))
    assert {path.name for path in logs} >= {"gateway.log", "worker-1.log"}
    lines = [line for path in logs for line in path.read_text(encoding="utf-8").splitlines()]
    assert any("booked in exactonline" in line for line in lines)  # INFO lines were written
    leaks = [
        f"{kind} {value!r}: {line}"
        for line in lines
        for kind, found in values.items()
        for value in found
        if re.search(rf"(?<!\w){re.escape(value)}(?!\w)", line, flags=re.IGNORECASE)
    ]
    assert leaks == []


def test_forget_leaves_no_trace_of_the_address_in_redis(main_job):
    stack, _ = main_job
    email = sorted(personal_values(stack)["email"])[0]
    assert email in redis_text(stack.connection)  # the caches, the finished jobs' payloads
    done = stack.cli("forget", "--email", email)
    assert done.returncode == 0, done.stderr
    assert "cached ids: removed" in done.stdout and "finished jobs: removed" in done.stdout
    assert "not removed" not in done.stdout  # the stack is idle: nothing waits to be processed
    assert email not in redis_text(stack.connection)
    others = [e for e in personal_values(stack)["email"] if e != email]
    assert all(other not in done.stdout for other in others)


def redis_text(connection: redis.Redis) -> str:
    """Every key, field, member and value in Redis as text (RQ's job data decompressed), lower-cased."""
    parts: list[str] = []

    def add(value: bytes) -> None:
        with contextlib.suppress(zlib.error):
            value = zlib.decompress(value)
        parts.append(value.decode("utf-8", "replace"))

    for key in connection.scan_iter("*"):
        add(key)
        kind = connection.type(key).decode()
        if kind == "string":
            add(connection.get(key) or b"")
        elif kind == "hash":
            for field, value in connection.hgetall(key).items():
                add(field)
                add(value)
        elif kind == "stream":
            for _, fields in connection.xrange(key):
                for field, value in fields.items():
                    add(field)
                    add(value)
        elif kind in ("set", "zset", "list"):
            members = (
                connection.smembers(key) if kind == "set"
                else connection.zrange(key, 0, -1) if kind == "zset" else connection.lrange(key, 0, -1)
            )  # fmt: skip
            for member in members:
                add(member)
    return "\n".join(parts).lower()
