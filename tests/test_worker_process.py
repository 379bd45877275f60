"""`koppel worker` as a process: its RQ scheduler (a forked child) does not outlive a killed worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SECRETS

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_scheduler_child_dies_with_a_killed_worker(tmp_path, redis_url):
    config = tmp_path / "koppel.toml"
    config.write_text('[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n')
    worker = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
        env={**os.environ, **SECRETS, "REDIS_URL": redis_url, "KOPPEL_LOG_LEVEL": "WARNING"},
    )
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
