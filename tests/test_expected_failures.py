"""Expected failures through a real worker: one log line naming the fix, no traceback (issue #12)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Event
from gateway.ingest import Ingestor
from tests.conftest import SECRETS, woo_order
from tests.pairs_support import ENV, EXACT_CLIENT_ID, exact_system
from workers.inbox import InboxPump
from workers.worker import run_worker

pytestmark = pytest.mark.integration


def not_connected() -> Config:
    """The shop feeding Exact Online, set up but never connected (no `koppel connect exact` yet). No request
    reaches the address: the missing tokens stop the first call."""
    return parse_config(
        {
            "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
            "systems": [exact_system("http://127.0.0.1:9")],
            "integrations": [{"id": "shop-to-exact", "source": "shop", "target": "exact", "flows": ["orders"]}],
        },
        environ=SECRETS | ENV,
    )


def test_an_order_for_a_system_not_yet_connected_names_koppel_connect_in_one_line(rconn, redis_url, caplog):
    order = json.loads(woo_order(4711))
    envelope = Envelope.wrap(Event("order.created", "order", str(order["id"]), f"k-{time.time_ns()}", order),
                             source="woocommerce", endpoint="shop")  # fmt: skip
    job_id = Ingestor(rconn).store([envelope])[0].job_id
    InboxPump(rconn, "koppel").drain(timeout=10)
    with caplog.at_level(logging.WARNING):
        run_worker(not_connected(), redis_url, burst=True)
    queue = Queue("koppel", connection=rconn, serializer=JSONSerializer)
    assert job_id in queue.failed_job_registry.get_job_ids()
    reason = queue.fetch_job(job_id).meta["reason"]
    assert "koppel connect exact" in reason
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "koppel connect exact" in lines[0], lines
    assert not any("Traceback" in r.getMessage() or r.exc_info for r in caplog.records)


def test_a_forking_worker_logs_an_expected_failure_as_one_line_too(rconn, redis_url, tmp_path):
    """`koppel worker --fork` runs each job in a child process; its log (stderr) has no traceback either."""
    order = json.loads(woo_order(4712))
    envelope = Envelope.wrap(Event("order.created", "order", str(order["id"]), f"k-{time.time_ns()}", order),
                             source="woocommerce", endpoint="shop")  # fmt: skip
    job_id = Ingestor(rconn).store([envelope])[0].job_id
    config = tmp_path / "koppel.toml"
    config.write_text(
        '[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n'
        '[[systems]]\nid = "exact"\nkind = "exactonline"\nbase_url = "http://127.0.0.1:9"\n'
        'credentials = { client_secret = "env:EXACT_CLIENT_SECRET" }\n'
        f'settings = {{ client_id = "{EXACT_CLIENT_ID}" }}\n'
        '[[integrations]]\nid = "shop-to-exact"\nsource = "shop"\ntarget = "exact"\nflows = ["orders"]\n'
    )
    environ = {**os.environ, **SECRETS, **ENV, "REDIS_URL": redis_url, "KOPPEL_LOG_LEVEL": "INFO"}
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "worker", "--burst", "--fork", "--config", str(config)],
                         env=environ, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert job_id in Queue("koppel", connection=rconn, serializer=JSONSerializer).failed_job_registry.get_job_ids()
    failures = [line for line in run.stderr.splitlines() if " WARNING " in line or " ERROR " in line]
    assert len(failures) == 1 and "koppel connect exact" in failures[0], run.stderr
    assert "Traceback" not in run.stderr
