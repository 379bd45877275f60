"""`koppel worker` as a process: its RQ scheduler (a forked child) does not outlive a killed worker, and it
stops when told to (SIGTERM, RQ's shutdown command) without waiting out its command listener's 60 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rq import Worker
from rq.command import send_shutdown_command

from tests.conftest import SECRETS

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def start_worker(tmp_path: Path, redis_url: str) -> subprocess.Popen[bytes]:
    config = tmp_path / "koppel.toml"
    config.write_text('[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n')
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
        env={**os.environ, **SECRETS, "REDIS_URL": redis_url, "KOPPEL_LOG_LEVEL": "WARNING"},
    )


def listening(worker: subprocess.Popen[bytes], rconn: redis.Redis) -> str:
    """Waits until the worker process listens on its command channel and is idle in its loop (its scheduler
    started: a stop that lands while RQ forks it is a start-up race of RQ's, noted in workers/worker.py);
    returns the worker's name."""
    deadline = time.monotonic() + 20
    while True:
        assert worker.poll() is None, "the worker exited"
        assert time.monotonic() < deadline, "the worker never listened for commands"
        for rq_worker in Worker.all(connection=rconn):
            [(_, subscribers)] = rconn.pubsub_numsub(rq_worker.pubsub_channel_name)
            if rq_worker.pid == worker.pid and subscribers and rq_worker.get_state() == "idle":
                return rq_worker.name
        time.sleep(0.05)


def stopped(worker: subprocess.Popen[bytes]) -> int:
    """The worker's exit code; generous: a worker waiting out RQ's 60 s listener wait fails it."""
    try:
        return worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not stop within 30 s of being told to")


@pytest.mark.parametrize("told_by", ["SIGTERM", "shutdown command"])
def test_an_idle_worker_stops_when_told_to_and_leaves_no_worker_registered(tmp_path, redis_url, rconn, told_by):
    worker = start_worker(tmp_path, redis_url)
    try:
        name = listening(worker, rconn)
        if told_by == "SIGTERM":
            worker.send_signal(signal.SIGTERM)
        else:  # RQ's command channel: what the listener is there for
            send_shutdown_command(rconn, name)
        assert stopped(worker) == 0
        assert name not in [w.name for w in Worker.all(connection=rconn)]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_scheduler_child_dies_with_a_killed_worker(tmp_path, redis_url):
    worker = start_worker(tmp_path, redis_url)
    try:
        deadline = time.monotonic() + 20
        while not children(worker.pid):
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the worker started no scheduler"
            time.sleep(0.05)
        scheduler = children(worker.pid)[0]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 10
        while alive(scheduler) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(scheduler), "the RQ scheduler outlived the killed worker"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
