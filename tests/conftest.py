"""Shared fixtures: a real Redis (Koppel's embedded supervisor on a free port), a real HTTP
gateway (uvicorn on a free port in a thread), and a config with one endpoint of every kind."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from gateway.app import create_app
from gateway.config import Config
from gateway.redisserver import EmbeddedRedis, free_port
from gateway.stack import LiveServer, serve
from gateway.vault import KEY_VAR, new_key
from tests.samples import SECRETS, make_config  # noqa: F401 - re-exported for the tests

os.environ.setdefault(KEY_VAR, new_key())  # tokens are stored encrypted (gateway/vault.py); children inherit it
# A gateway that cannot reach its Redis journals to <data dir>/journal and a later one drains what it finds
# there: the test run gets a data directory of its own, so no test's journal reaches another's Redis (nor the
# repository's .koppel).
os.environ.setdefault("KOPPEL_DATA_DIR", tempfile.mkdtemp(prefix="koppel-tests-"))


def woo_signature(body: bytes, secret: str = "wc&secret-\u00e9") -> str:
    """WooCommerce signs with the secret after wp_specialchars_decode: &amp; became &."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def woo_headers(body: bytes, topic: str = "order.created") -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-wc-webhook-topic": topic,
        "x-wc-webhook-resource": topic.split(".")[0],
        "x-wc-webhook-event": topic.split(".")[-1],
        "x-wc-webhook-id": "7",
        "x-wc-webhook-delivery-id": "0f0e0d0c0b0a09080706050403020100",
        "x-wc-webhook-source": "https://shop.example/",
        "x-wc-webhook-signature": woo_signature(body),
    }


def woo_order(order_id: int, modified: str = "2026-11-20T10:00:00") -> bytes:
    """A WooCommerce order body as WooCommerce encodes it (\\uXXXX escapes, float line price)."""
    return (
        f'{{"id":{order_id},"status":"processing","currency":"EUR","date_modified_gmt":"{modified}",'
        '"billing":{"first_name":"J\\u00f6rg","email":"jorg@example.com"},'
        '"line_items":[{"sku":"KOP-1","quantity":2,"total":"24.71","price":12.356666666666667}]}'
    ).encode()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def rconn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def gateway(config: Config, redis_url: str) -> Iterator[LiveServer]:
    live = serve(create_app(config, redis_url), gateway=config.gateway)
    yield live
    live.stop()


@pytest.fixture
def http(gateway: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield client


@pytest.fixture
def tmp_data(tmp_path: Path) -> Path:
    return tmp_path


PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
"""Each test's reports by phase (setup, call, teardown), for fixtures that act on a failure (the browser
tests' screenshot, tests/browser_support.py)."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Each test's reports by phase, in its stash under PHASE_REPORTS."""
    report: pytest.TestReport = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report
