"""Business Central polled through the generic poller (workers/pollers.py) against its sandbox over real HTTP:
the events a poll stores, their resources and flows, and nothing queued twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from connectors.businesscentral.connector import BusinessCentralSource
from connectors.businesscentral.sandbox import SandboxConfig, create_sandbox
from gateway.config import Config, parse_config
from gateway.ingest import JOB_FUNC
from gateway.stack import LiveServer, serve
from workers import runtime
from workers.inbox import pump_for
from workers.pollers import poll

pytestmark = pytest.mark.integration

SECRET = "poll-secret"


def make_config(url: str) -> Config:
    sandbox = SandboxConfig()
    return parse_config(
        {
            "systems": [
                {"id": "bc", "kind": "businesscentral", "base_url": url,
                 "credentials": {"client_secret": "env:BC_SECRET"},
                 "settings": {"tenant": sandbox.tenant, "client_id": sandbox.client_id, "company": "CRONUS NL",
                              "login_url": url}},
                {"id": "shop", "kind": "woocommerce", "base_url": "http://127.0.0.1:9",
                 "credentials": {"consumer_key": "env:WC_KEY", "consumer_secret": "env:WC_SECRET"}},
            ],
            "integrations": [{"id": "bc-to-shop", "source": "bc", "target": "shop", "flows": ["customers", "stock"]}],
        },
        environ={"BC_SECRET": SECRET, "WC_KEY": "ck", "WC_SECRET": "cs"},
    )  # fmt: skip


@dataclass
class Env:
    live: LiveServer
    http: httpx.Client
    conn: redis.Redis
    config: Config

    def control(self, action: str, body: dict[str, Any]) -> Any:
        return self.http.post(f"{self.live.url}/sandbox/{action}", json=body).raise_for_status().json()

    def envelopes(self) -> list[dict[str, Any]]:
        pump_for(self.conn, self.config.gateway, coalesce=False).drain(timeout=10)  # every event's own envelope
        queue = Queue(self.config.gateway.queue, connection=self.conn, serializer=JSONSerializer)
        jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
        return [job.args[0] for job in jobs if job is not None and job.func_name == JOB_FUNC]


@pytest.fixture
def env(rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    live = serve(create_sandbox(client_secret=SECRET, page_size=2), name="bc sandbox")
    config = make_config(live.url)
    rt = runtime.Runtime(config=config, connection=rconn)
    monkeypatch.setattr(runtime, "_runtime", rt)
    try:
        with httpx.Client(timeout=10) as http:
            yield Env(live, http, rconn, config)
    finally:
        rt.close()
        live.stop()


def test_polled_customers_become_customer_events_once(env):
    ids = env.control("seed", {"entity": "customers", "records": [{"displayName": f"C{n}"} for n in range(3)]})["ids"]
    first = poll("bc", "customers")
    assert (first["pages"], first["records"], first["queued"]) == (2, 3, 3)
    again = poll("bc", "customers")
    assert again["queued"] == 0 and again["cursor"] == first["cursor"]  # the overlap read again, nothing queued
    env.control("change", {"entity": "customers", "id": ids["10001"], "fields": {"city": "Utrecht"}})
    later = poll("bc", "customers")
    assert later["queued"] == 1 and later["cursor"] > first["cursor"]
    envelopes = env.envelopes()
    assert {e["resource"] for e in envelopes} == {"customers"}
    assert {BusinessCentralSource.flow_of(e["resource"]) for e in envelopes} == {"customers"}
    assert [e["payload"]["city"] for e in envelopes if e["resource_id"] == ids["10001"]] == ["", "Utrecht"]


def test_polled_stock_follows_postings_bc_does_not_timestamp(env):
    ids = env.control("seed/items", {"skus": ["A", "B", "C"]})["items"]
    assert poll("bc", "itemInventory")["queued"] == 3  # the first poll: every inventory item
    assert poll("bc", "itemInventory")["queued"] == 0
    env.control("change", {"entity": "items", "id": ids["C"], "fields": {"inventory": 4}})
    assert poll("bc", "itemInventory")["queued"] == 1
    stock = [e for e in env.envelopes() if e["resource_id"] == ids["C"]]
    assert [e["payload"]["inventory"] for e in stock] == [0, 4]
    assert {BusinessCentralSource.flow_of(e["resource"]) for e in stock} == {"stock"}
