"""deploy/compose.yaml, the production layout of docs/deployment.md: images cannot be pulled here, so its
structure is checked instead — that the services name one another coherently and Koppel can use its
REDIS_URL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway import redisclient

yaml = pytest.importorskip("yaml")  # PyYAML: installed with Koppel's dependencies (apprise needs it)

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_the_layout_has_two_gateways_two_workers_a_proxy_a_primary_a_replica_and_three_sentinels(compose):
    services = compose["services"]
    koppel = {"gateway-1", "gateway-2", "worker-1", "worker-2"}
    assert {"proxy", "redis-primary", "redis-replica", *koppel} <= set(services)
    sentinels = sorted(name for name in services if name.startswith("sentinel-"))
    assert sentinels == ["sentinel-1", "sentinel-2", "sentinel-3"]
    for name in ("gateway-1", "gateway-2"):
        assert services[name]["command"][:2] == ["koppel", "serve"]
    for name in ("worker-1", "worker-2"):
        assert services[name]["command"] == ["koppel", "worker"]


def test_gateways_and_workers_reach_redis_through_the_sentinels_of_the_layout(compose):
    services = compose["services"]
    for name in ("gateway-1", "gateway-2", "worker-1", "worker-2"):
        url = services[name]["environment"]["REDIS_URL"].replace("${REDIS_PASSWORD}", "secret")
        assert redisclient.url_problem(url) is None
        target = redisclient.sentinel_target(url)
        assert target is not None and target.password == "secret"
        assert {host for host, _ in target.sentinels} == {"sentinel-1", "sentinel-2", "sentinel-3"}
        sentinel_script = services["sentinel-1"]["command"][0]
        assert f"sentinel monitor {target.service} redis-primary 6379 2" in sentinel_script
        assert f"sentinel auth-pass {target.service} $$REDIS_PASSWORD" in sentinel_script
    assert "--replicaof redis-primary 6379" in services["redis-replica"]["command"]


def test_each_gateway_keeps_its_journal_on_a_volume_of_its_own(compose):
    services = compose["services"]
    disks = [next(v.split(":")[0] for v in services[name]["volumes"] if v.endswith(":/home/koppel/data"))
             for name in ("gateway-1", "gateway-2")]  # fmt: skip
    assert len(set(disks)) == 2
    assert set(disks) <= set(compose["volumes"])


def test_the_proxy_spreads_webhooks_over_the_gateways_and_keeps_metrics_private(compose):
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstream = set(re.findall(r"server (gateway-\d):8000", nginx))
    assert upstream == {"gateway-1", "gateway-2"}
    assert re.search(r"location = /metrics \{[^}]*deny all;", nginx)
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in compose["services"]["proxy"]["volumes"]
