"""What the console's tests share: the WooCommerce order they book in the Exact Online sandbox, the config
(the console's changed mapping, the worker's default one) and `Env`, which runs orders through RQ's worker code
and reads the console over HTTP (tests/test_console_payloads.py, tests/test_console_browser.py)."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from gateway import keys
from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Event
from gateway.ingest import JOB_FUNC, make_queue
from gateway.stack import LiveServer
from tests import pairs_support as pairs

ORDER = json.loads((Path(__file__).parent / "fixtures" / "woocommerce" / "order_company_coupon.json").read_text())
SKUS = ["MEEL-SPELT-5", "BAK-PROFI-R40", "OVEN-HS", "SHIPPING", "FEE", "DISCOUNT"]
EMAIL = ORDER["billing"]["email"]
CHANGED = {"orders": {"exactonline": {"Description": "$left('Console ' & number, 60)"}}}
"""The console's (current) mapping override; the worker ran with the default mapping."""


def config_for(exact_url: str, *, mappings: dict[str, Any] | None = None) -> Config:
    integration = {"id": "shop-to-exact", "source": "shop", "target": "exact", "flows": ["orders"]}
    return parse_config(
        {
            "gateway": {"admin_token": "env:ADMIN_TOKEN"},
            "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
            "systems": [pairs.exact_system(exact_url)],
            "integrations": [integration | ({"mappings": mappings} if mappings else {})],
        },
        environ=pairs.ENV | {"WC_SECRET": "s"},
    )


@dataclass
class Env:
    exact: LiveServer
    console: httpx.Client
    http: httpx.Client
    conn: redis.Redis
    redis_url: str
    worker_config: Config

    def order(self, number: int) -> str:
        """Queue a WooCommerce order event and run the worker until the queue is empty; the job id."""
        payload = copy.deepcopy(ORDER)
        payload["id"], payload["number"] = number, str(number)
        event = Event("order.created", "order", str(number), f"k{number}", payload)
        envelope = Envelope.wrap(event, source="woocommerce", endpoint="shop")
        queue: Queue = make_queue(self.conn, "koppel")
        job = queue.enqueue(JOB_FUNC, envelope.model_dump(mode="json"), meta={"endpoint": "shop"})
        # The worker's own job execution (failures to the failed registry), without its work loop.
        worker = SimpleWorker([queue], connection=self.conn, serializer=JSONSerializer)
        worker.execute_job(job, queue)
        return str(job.id)

    def failed_after_mapping(self, number: int) -> str:
        """An order Exact refuses once it was mapped (its POST answered 400), failed: the job id. Two orders
        before it: the first creates the customer, the second shows which request is the order's POST."""
        self.order(number - 2)
        probe = json.loads(self.conn.get(keys.snapshot("shop-to-exact", self.order(number - 1))))
        before = next(i for i, r in enumerate(probe["requests"]) if r["method"] == "POST")
        fail = f"{self.exact.url}/sandbox/fail"
        if before:
            self.http.post(fail, json={"delay": 0.001, "times": before}).raise_for_status()  # passes them on
        self.http.post(fail, json={"status": 400, "times": 50}).raise_for_status()  # the POST, and the retry's lookups
        job_id = self.order(number)
        assert job_id in make_queue(self.conn, "koppel").failed_job_registry.get_job_ids()
        return job_id

    def csrf(self, page: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found
        return found.group(1)


class SandboxRefused(Exception):
    """What `fail_with_reason` raises: its failure line starts with this class's full module path."""


def fail_with_reason(envelope: dict[str, Any], reason: str) -> None:
    """A job function (run by RQ's worker code) that fails with `reason`."""
    raise SandboxRefused(reason)


def failed_jobs(conn: redis.Redis, count: int, *, endpoint: str = "shop", first: int = 8201) -> list[str]:
    """`count` failed jobs of WooCommerce order events (`order.created <n>`, numbers from `first`) from
    `endpoint`, failed by RQ's worker code: their ids."""
    queue: Queue = make_queue(conn, "koppel")
    worker = SimpleWorker([queue], connection=conn, serializer=JSONSerializer)
    jobs = []
    for number in range(first, first + count):
        payload = {"id": number, "number": str(number), "billing": {"email": EMAIL}}
        event = Event("order.created", "order", str(number), f"f{number}", payload)
        envelope = Envelope.wrap(event, source="woocommerce", endpoint=endpoint).model_dump(mode="json")
        job = queue.enqueue(fail_with_reason, envelope, f"GET crm/Accounts: Exact answered 400 for {EMAIL}",
                            meta={"endpoint": endpoint})  # fmt: skip
        worker.execute_job(job, queue)  # the worker's own job execution (to the failed registry), no work loop
        jobs.append(str(job.id))
    return jobs
