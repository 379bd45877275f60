"""Batched writes into Business Central: the client's `$batch` (respx: 100 requests a call, each answer on its
own request, errors mapped as a request alone would raise) and `batch_function` on many product events at once,
Winstore's articles polled (the real poller) into the Business Central sandbox over real HTTP and real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
import redis
import respx

from connectors.businesscentral.client import BusinessCentralClient
from connectors.businesscentral.errors import (
    BusinessCentralConflict,
    BusinessCentralNotFound,
    BusinessCentralResponseError,
    BusinessCentralUnavailable,
)
from connectors.contract import FlowResult
from gateway.config import Config
from gateway.envelope import Envelope
from gateway.ingest import JOB_FUNC, make_queue
from tests import pairs_support as pairs
from workers.flows import Work, batch_function
from workers.inbox import pump_for
from workers.pollers import poll

COMPANY = "11111111-2222-3333-4444-555555555555"
ROOT = "https://bc.example/v2.0/production/api/v2.0"


def answer(request: httpx.Request, statuses: dict[str, int] | None = None) -> httpx.Response:
    """BC's JSON batch answer: each request's id with its status (200 unless `statuses` says otherwise)."""
    asked = json.loads(request.content)["requests"]
    out = []
    for inner in reversed(asked):  # answers need not come in the order asked
        status = (statuses or {}).get(inner["url"].rsplit("(", 1)[-1].rstrip(")"), 200)
        body = {"id": inner["url"], "@odata.etag": 'W/"1"'} if status < 300 else {
            "error": {"code": "Request_EntityChanged" if status == 412 else "BadRequest_NotFound", "message": "no"}}
        out.append({"id": inner["id"], "status": status, "headers": {}, "body": body})
    return httpx.Response(200, json={"responses": out})


@pytest.fixture
def client() -> Iterator[BusinessCentralClient]:
    with httpx.Client() as http:
        yield BusinessCentralClient(http, base_url="https://bc.example", environment="production", company=COMPANY,
                                    sleep=lambda _: None)  # fmt: skip


def test_a_batch_goes_a_hundred_requests_a_call_each_answer_on_its_own_request(client):
    statuses = {"i7": 404, "i150": 412, "i200": 503}
    with respx.mock(assert_all_called=True) as bc:
        route = bc.post(f"{ROOT}/$batch").mock(side_effect=lambda r: answer(r, statuses))
        patches = [("PATCH", f"items(i{n})", {"displayName": str(n)}, {"If-Match": "*"}) for n in range(250)]
        results = client.batch(patches)
    sent = [json.loads(call.request.content)["requests"] for call in route.calls]
    assert [len(requests) for requests in sent] == [100, 100, 50] and client.calls == 3
    assert sent[0][1] == {"id": "1", "method": "PATCH", "url": f"companies({COMPANY})/items(i1)", "body": {
        "displayName": "1"}, "headers": {"Content-Type": "application/json", "If-Match": "*"}}  # fmt: skip
    assert route.calls[0].request.headers["Accept"] == "application/json"
    assert isinstance(results[7], BusinessCentralNotFound)
    assert isinstance(results[150], BusinessCentralConflict) and results[150].status == 412
    assert isinstance(results[200], BusinessCentralUnavailable)
    assert str(results[7]) == "PATCH items(i7) (in a $batch): Business Central answered 404 BadRequest_NotFound: no"
    answered = [r["id"] for r in results if isinstance(r, dict)]
    assert answered[:3] == [f"companies({COMPANY})/items(i{n})" for n in range(3)]


def test_an_answer_missing_a_request_is_that_requests_error(client):
    with respx.mock() as bc:
        bc.post(f"{ROOT}/$batch").mock(return_value=httpx.Response(200, json={"responses": [
            {"id": "0", "status": 204}]}))  # fmt: skip
        first, second = client.batch([("DELETE", "items(a)", None, None), ("DELETE", "items(b)", None, None)])
    assert first == {} and isinstance(second, BusinessCentralResponseError)


# -- batch_function: Winstore articles → Business Central items ---------------------------------------------------

INTEGRATION = "winstore-to-bc"
ARTICLES = [{"ArtNr": f"ART-{n:03d}", "Description": f"Artikel {n}", "SalesPrice": "10.00", "VatPercentage": "21"}
            for n in range(120)]  # fmt: skip


def make_config(bc_url: str, ws_url: str) -> Config:
    integration = {"id": INTEGRATION, "source": "winstore", "target": "bc", "flows": ["products"]}
    return pairs.pair_config([pairs.bc_system(bc_url), pairs.winstore_system(ws_url)], [integration])


@pytest.fixture
def env(rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[pairs.BCWinstore]:
    with pairs.bc_and_winstore(pairs.BCWinstore, partial(make_config), rconn, monkeypatch) as env:
        yield env


def polled_works(env: pairs.BCWinstore) -> list[Work]:
    """Winstore's articles polled (the real poller) and pumped into jobs; each job's event as a Work (not run)."""
    poll("winstore", "articles")
    pump_for(env.conn, env.rt.config.gateway).drain(timeout=10)
    queue = make_queue(env.conn, env.rt.config.gateway.queue)
    jobs = [job for job in (queue.fetch_job(i) for i in queue.job_ids) if job is not None and job.func_name == JOB_FUNC]
    integration = env.rt.config.integrations[0]
    works = []
    for job in jobs:
        queue.remove(job)
        envelope = Envelope.model_validate(job.args[0])
        works.append(Work(integration, envelope, env.rt.source("winstore"), env.rt.target("bc"), env.rt))
    return works


def change(env: pairs.BCWinstore, articles: list[dict[str, Any]]) -> None:
    env.http.post(f"{env.winstore.url}/sandbox/articles", json={"articles": articles}).raise_for_status()


def items(env: pairs.BCWinstore) -> dict[str, dict[str, Any]]:
    company = env.sandbox.company()
    return {r["number"]: r for r in env.sandbox.store.records[company]["items"].values()}


def test_a_burst_of_product_updates_goes_in_two_batch_calls_a_hundred_items(env):
    change(env, ARTICLES)
    many = batch_function("products", "businesscentral")
    assert many is not None and batch_function("customers", "businesscentral") is None
    created = many(polled_works(env))
    assert [r.outcome for r in created if isinstance(r, FlowResult)] == ["created"] * 120
    target = env.rt.target("bc")
    gone = items(env)["ART-007"]["id"]
    env.sandbox.store.records[env.sandbox.company()]["items"].pop(gone)  # deleted in BC since Koppel created it
    change(env, [article | {"Description": f"Nieuw {n}"} for n, article in enumerate(ARTICLES)])
    works = polled_works(env)
    before = target.calls
    updated = many(works)
    assert all(isinstance(r, FlowResult) for r in updated)
    results = [r for r in updated if isinstance(r, FlowResult)]
    assert sorted(r.outcome for r in results) == ["created"] + ["updated"] * 119  # the deleted one: created again
    assert {r.number: r.outcome for r in results}["ART-007"] == "created"
    calls = target.calls - before
    batches = env.sandbox.counters.by_endpoint().get("POST $batch", 0)
    assert batches == 4  # 100 + 20 items read, then 100 + 19 PATCHed
    assert calls == batches + 1  # and the one item created again, alone
    assert calls / 120 <= 0.05 and sum(r.calls or 0 for r in results) == calls
    assert {n: i["displayName"] for n, i in items(env).items()} == {f"ART-{n:03d}": f"Nieuw {n}" for n in range(120)}


def test_an_item_bc_refuses_fails_alone(env):
    change(env, ARTICLES[:3])
    many = batch_function("products", "businesscentral")
    assert many is not None
    many(polled_works(env))
    target = env.rt.target("bc")
    known = items(env)
    errors = target.update_products([(known["ART-000"]["id"], {"displayName": "A"}),
                                     (known["ART-001"]["id"], {"noSuchField": "B"}),
                                     (known["ART-002"]["id"], {"displayName": "C"})])  # fmt: skip
    assert errors[0] is None and errors[2] is None
    assert errors[1] is not None and "400" in str(errors[1]) and "(in a $batch)" in str(errors[1])
    assert [i["displayName"] for i in items(env).values()] == ["A", "Artikel 1", "C"]


def test_an_item_changed_in_bc_between_read_and_write_is_written_again_alone_keeping_that_change(env):
    change(env, ARTICLES[:2])
    many = batch_function("products", "businesscentral")
    assert many is not None
    many(polled_works(env))
    target = env.rt.target("bc")
    known = items(env)
    batch = target.bc.batch

    def changed_meanwhile(requests: Any) -> Any:  # a user saves ART-001 in BC between the read and the PATCH
        answers = batch(requests)
        if requests[0][0] == "GET":
            body = {"entity": "items", "id": known["ART-001"]["id"], "fields": {"displayName2": "from BC"}}
            env.http.post(f"{env.bc.url}/sandbox/change", json=body).raise_for_status()
        return answers

    target.bc.batch = changed_meanwhile  # type: ignore[method-assign]
    errors = target.update_products([(known["ART-000"]["id"], {"displayName": "A"}),
                                     (known["ART-001"]["id"], {"displayName": "B"})])  # fmt: skip
    assert errors == [None, None]
    alone = {k: v for k, v in env.sandbox.counters.by_endpoint().items() if k.endswith(" items({id})")}
    assert alone == {"GET items({id})": 1, "PATCH items({id})": 1}  # ART-001 read again and PATCHed alone (412)
    now = items(env)
    assert (now["ART-000"]["displayName"], now["ART-001"]["displayName"]) == ("A", "B")
    assert now["ART-001"]["displayName2"] == "from BC"  # only what differed was sent


def test_only_targets_that_batch_a_flow_have_a_batch_function():
    assert batch_function("orders", "woocommerce") is None
    assert batch_function("customers", "businesscentral") is None
    assert batch_function("stock", "winstore") is None
    assert batch_function("stock", "no-such-kind") is None
    assert batch_function("stock", "woocommerce") is not None and batch_function("products", "woocommerce") is not None
