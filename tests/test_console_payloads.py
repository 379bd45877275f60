"""The console's activity with payload snapshots, failed work, replays and mappings, end to end: a real RQ
worker books WooCommerce orders in the Exact sandbox (over HTTP, real Redis), the gateway serves the console."""

from __future__ import annotations

import copy
import html
import json
import re
from collections.abc import Iterator

import httpx
import pytest
import redis

from gateway import keys
from gateway.app import create_app
from gateway.ingest import make_queue
from gateway.stack import serve
from tests import pairs_support as pairs
from tests.console_support import CHANGED, EMAIL, ORDER, SKUS, Env, config_for
from workers import runtime

pytestmark = pytest.mark.integration


@pytest.fixture
def env(rconn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    with pairs.exact_served() as (exact, _), httpx.Client(timeout=10) as http:
        pairs.authorise_exact(http, exact, rconn)
        http.post(f"{exact.url}/sandbox/seed/items", json={"skus": SKUS}).raise_for_status()
        gateway = serve(create_app(config_for(exact.url, mappings=CHANGED), redis_url))
        try:
            with httpx.Client(base_url=gateway.url, timeout=10) as console:
                assert console.post("/console/login", data={"token": pairs.ENV["ADMIN_TOKEN"]}).status_code == 303
                with pairs.installed(config_for(exact.url), rconn, monkeypatch) as rt:
                    yield Env(exact, console, http, rconn, redis_url, rt.config)
        finally:
            gateway.stop()


def snapshot_row(page: str, job_id: str) -> str:
    found = re.search(rf'<tr class="payloads" data-snapshot="{job_id}">(.*?)</tr>', page, re.S)
    assert found, f"no payloads shown for job {job_id}"
    return found.group(1)


def test_a_handled_job_keeps_a_payload_snapshot_for_the_payload_retention(env):
    job_id = env.order(7101)
    key = keys.snapshot("shop-to-exact", job_id)
    assert 6 * 24 * 3600 < env.conn.ttl(key) <= 7 * 24 * 3600  # the default: 7 days
    snapshot = json.loads(env.conn.get(key))
    assert snapshot["flow"] == "orders" and snapshot["job_id"] == job_id
    assert snapshot["received"]["billing"]["email"] == EMAIL
    assert [m["flow"] for m in snapshot["mapped"]] == ["customers", "orders"]  # the new customer, then the order
    assert snapshot["mapped"][-1]["payload"]["YourRef"] == "7101"
    posts = [r for r in snapshot["requests"] if r["method"] == "POST" and r["path"].endswith("SalesOrders")]
    assert len(posts) == 1 and posts[0]["status"] == 201
    assert posts[0]["body"]["YourRef"] == "7101"
    assert {r["system"] for r in snapshot["requests"]} == {"Exact"}
    assert "Authorization" not in json.dumps(snapshot) and "Bearer" not in json.dumps(snapshot)
    runtime.current().snapshot_ttl = 600  # the retention the worker is given
    assert 0 < env.conn.ttl(keys.snapshot("shop-to-exact", env.order(7102))) <= 600


def test_activity_shows_what_came_in_and_went_out_with_personal_data_masked(env):
    job_id = env.order(7102)
    page = env.console.get("/console/integrations/shop-to-exact")
    assert page.status_code == 200
    assert f'<tr data-job="{job_id}" data-outcome="created">' in page.text
    payloads = html.unescape(snapshot_row(page.text, job_id))
    assert "POST /salesorder/SalesOrders → 201" in payloads
    assert '"YourRef": "7102"' in payloads
    for personal in (EMAIL, "de Vries", "+31 20 123 4567", "Keizersgracht", "1052 KZ"):
        assert personal not in page.text
    assert "•••" in payloads
    shown = env.console.get("/console/integrations/shop-to-exact?pii=show")
    assert EMAIL in snapshot_row(shown.text, job_id)
    assert "Keizersgracht" in shown.text


def test_a_failed_job_is_listed_and_replayed(env):
    job_id = env.failed_after_mapping(7203)
    page = env.console.get("/console/integrations/shop-to-exact/failed")
    assert page.status_code == 200
    assert f'<tr data-job="{job_id}">' in page.text
    home = env.console.get("/console/").text
    assert re.search(r'class="failures"><a [^>]*>1</a>', home)
    replayed = env.console.post(f"/console/integrations/shop-to-exact/failed/{job_id}/replay",
                                data={"csrf": env.csrf(page.text)})  # fmt: skip
    assert replayed.status_code == 200
    assert f"Job {job_id} is queued again" in replayed.text
    queue = make_queue(env.conn, "koppel")
    assert job_id in queue.job_ids and job_id not in queue.failed_job_registry.get_job_ids()
    again = env.console.post(f"/console/integrations/shop-to-exact/failed/{job_id}/replay",
                             data={"csrf": env.csrf(page.text)})  # fmt: skip
    assert again.status_code == 404 and "no failed job" in again.text


def test_replay_with_the_current_mapping_shows_the_difference_first(env):
    job_id = env.failed_after_mapping(7306)
    page = env.console.get(f"/console/integrations/shop-to-exact/failed/{job_id}/remap")
    assert page.status_code == 200, page.text
    diff = re.search(r'<pre id="diff">(.*?)</pre>', page.text, re.S)
    assert diff, page.text
    lines = html.unescape(re.sub(r"<[^>]+>", "", diff.group(1))).splitlines()
    changed = [line for line in lines if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    # Only what the mapping change changed: the same input (the flow's discount lines), the same numbers.
    assert changed == ['-  "Description": "Webshop order 7306",', '+  "Description": "Console 7306",']
    assert EMAIL not in page.text
    assert 'form id="confirm-replay"' in page.text
    queue = make_queue(env.conn, "koppel")
    assert job_id in queue.failed_job_registry.get_job_ids()  # looking changed nothing
    env.conn.delete(keys.snapshot("shop-to-exact", job_id))  # expired: the event's payload is the input
    bare = html.unescape(env.console.get(f"/console/integrations/shop-to-exact/failed/{job_id}/remap").text)
    assert "the event's payload is the input" in bare and "nothing to compare with" in bare
    assert 'id="diff"' not in bare
    assert '"Description": "Console 7306"' in bare  # what the current mapping makes of it
    confirmed = env.console.post(f"/console/integrations/shop-to-exact/failed/{job_id}/replay",
                                 data={"csrf": env.csrf(page.text), "mapping": "current"})  # fmt: skip
    assert confirmed.status_code == 200 and "queued again with the current mapping" in confirmed.text
    assert job_id in queue.job_ids


def test_the_mapping_page_previews_the_latest_record_and_diffs_against_the_default(env):
    env.order(7107)
    page = env.console.get("/console/integrations/shop-to-exact/mappings/orders")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "-Description = \"$left('Webshop order ' & number, 60)\"" in text
    assert "+Description = \"$left('Console ' & number, 60)\"" in text
    output = re.search(r'<pre id="output">(.*?)</pre>', text, re.S)
    assert output and '"Description": "Console 7107"' in output.group(1)
    mine = copy.deepcopy(ORDER) | {"number": "9001", "id": 9001}
    posted = env.console.post("/console/integrations/shop-to-exact/mappings/orders",
                              data={"csrf": env.csrf(page.text), "input": json.dumps(mine)})  # fmt: skip
    assert posted.status_code == 200
    assert '"Description": "Console 9001"' in html.unescape(posted.text)
    bad = env.console.post("/console/integrations/shop-to-exact/mappings/orders",
                           data={"csrf": env.csrf(page.text), "input": "{not json"})  # fmt: skip
    assert 'id="preview-error"' in bad.text and "not JSON" in bad.text
    assert env.console.get("/console/integrations/shop-to-exact/mappings/stock").status_code == 404
