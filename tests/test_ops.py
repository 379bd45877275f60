"""Operators: rq-dashboard behind admin auth, and `koppel replay` for failed jobs."""

from __future__ import annotations

import base64

import httpx
import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from gateway.app import create_app
from gateway.cli import main
from gateway.errors import ConfigError
from tests.conftest import SECRETS, make_config, serve

pytestmark = pytest.mark.integration

TOKEN = SECRETS["ADMIN_TOKEN"]


def basic(password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()}


@pytest.fixture
def ops(redis_url):
    live = serve(create_app(make_config(admin_token="env:ADMIN_TOKEN"), redis_url))
    with httpx.Client(base_url=live.url, timeout=10) as client:
        yield client
    live.stop()


def failed_job(rconn, endpoint: str = "shop") -> str:
    """A job of Koppel's queue that fails (an envelope the worker cannot read), run to failure."""
    from workers.worker import run_worker

    queue = Queue("koppel", connection=rconn, serializer=JSONSerializer)
    job = queue.enqueue("workers.jobs.process_event", {"not": "an envelope"}, meta={"endpoint": endpoint})
    run_worker(make_config(), _url(rconn), burst=True)
    assert job.id in queue.failed_job_registry.get_job_ids()
    return job.id


def _url(rconn) -> str:
    kw = rconn.connection_pool.connection_kwargs
    password = f":{kw['password']}@" if kw.get("password") else ""  # the embedded Redis's (gateway/redisserver.py)
    return f"redis://{password}{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


BEARER = {"authorization": f"Bearer {TOKEN}"}
EVIL = "http://evil.example"


def queue_of(rconn) -> Queue:
    return Queue("koppel", connection=rconn, serializer=JSONSerializer)


def log_in(ops: httpx.Client) -> None:
    """The web console's login: its session cookie (path /) is what a browser brings to /ops."""
    answer = ops.post("/console/login", data={"token": TOKEN, "next": "/ops/rq/"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ops/rq/"


@pytest.mark.parametrize(
    "headers",
    [{"authorization": "Bearer wrong"}, basic("wrong"), basic(TOKEN), {"authorization": "Basic !!notbase64"}],
    ids=["wrong-bearer", "wrong-basic", "basic-with-the-token", "garbage"],
)
def test_dashboard_refuses_requests_without_the_admin_token_or_with_basic(ops, headers):
    response = ops.get("/ops/rq/", headers=headers)
    assert response.status_code == 401
    assert "www-authenticate" not in response.headers  # no Basic prompt a browser would cache
    assert "/console/login" in response.json()["message"] or "admin token" in response.json()["message"]


def test_a_browser_without_a_session_is_sent_to_the_console_login_and_back(ops):
    response = ops.get("/ops/rq/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/ops/rq/"
    page = ops.get(response.headers["location"])
    assert 'name="next" value="/ops/rq/"' in page.text
    log_in(ops)
    assert ops.get("/ops/rq/").status_code == 200


def test_login_goes_back_only_to_a_path_of_this_gateway(ops):
    for elsewhere in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        answer = ops.post("/console/login", data={"token": TOKEN, "next": elsewhere}, follow_redirects=False)
        assert answer.headers["location"] == "/console/"


def test_requeue_all_by_get_is_refused_even_with_the_admin_token(ops, rconn):
    job_id = failed_job(rconn)
    assert ops.get("/ops/rq/requeue/koppel").status_code == 303  # unauthenticated: to the login
    refused = ops.get("/ops/rq/requeue/koppel", headers=BEARER)
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    log_in(ops)
    assert ops.get("/ops/rq/requeue/koppel").status_code == 405
    assert ops.get("/ops/rq/queue/koppel/failed/empty").status_code == 405
    assert job_id in queue_of(rconn).failed_job_registry.get_job_ids()


@pytest.mark.parametrize(
    "credentials",
    ["bearer", "basic", "session"],
)
@pytest.mark.parametrize(
    "origin",
    [{"origin": EVIL}, {"referer": EVIL + "/page"}, {"sec-fetch-site": "cross-site", "origin": EVIL},
     {"origin": "null"}],
    ids=["origin", "referer", "fetch-site", "null-origin"],
)  # fmt: skip
def test_a_form_posted_from_another_site_changes_nothing(ops, rconn, credentials, origin):
    job_id = failed_job(rconn)
    queue = queue_of(rconn)
    queued = queue.enqueue("workers.jobs.process_event", {"not": "an envelope"})
    headers = {**origin, "content-type": "application/x-www-form-urlencoded"}
    if credentials == "bearer":
        headers.update(BEARER)
    elif credentials == "basic":
        headers.update(basic(TOKEN))
    else:
        log_in(ops)
    for path in ("/ops/rq/queue/koppel/queued/empty", "/ops/rq/requeue/koppel", f"/ops/rq/job/{job_id}/delete"):
        answer = ops.post(path, headers=headers, content=b"")
        assert answer.status_code in (401, 403), (path, answer.status_code)
    assert queued.id in queue.job_ids
    assert job_id in queue.failed_job_registry.get_job_ids()


def test_a_session_post_with_no_origin_at_all_is_refused_but_a_same_origin_one_passes(ops, rconn):
    job_id = failed_job(rconn)
    log_in(ops)
    assert ops.post(f"/ops/rq/job/{job_id}/requeue").status_code == 403  # a browser always sends Origin
    same = ops.post(f"/ops/rq/job/{job_id}/requeue", headers={"origin": str(ops.base_url).rstrip("/"),
                                                              "sec-fetch-site": "same-origin"})  # fmt: skip
    assert same.status_code == 200
    assert job_id in queue_of(rconn).job_ids


def test_the_public_url_counts_as_the_gateways_own_origin(redis_url, rconn):
    config = make_config(admin_token="env:ADMIN_TOKEN", public_url="https://koppel.example")
    live = serve(create_app(config, redis_url))
    try:
        job_id = failed_job(rconn)
        with httpx.Client(base_url=live.url, timeout=10) as client:
            answer = client.post(
                f"/ops/rq/job/{job_id}/requeue", headers={**BEARER, "origin": "https://koppel.example"}
            )
            assert answer.status_code == 200
    finally:
        live.stop()


def test_every_operator_answer_carries_the_security_headers(ops):
    for answer in (ops.get("/ops/rq/", headers=BEARER), ops.get("/ops/rq/", headers=basic("x")),
                   ops.get("/ops/rq/static/js/jquery-3.5.1.min.js", headers=BEARER),
                   ops.get("/ops/rq/requeue/koppel", headers=BEARER)):  # fmt: skip
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert "default-src 'self'" in answer.headers["content-security-policy"]


def test_dashboard_works_with_the_admin_token_and_replays_a_failed_job(ops, rconn):
    job_id = failed_job(rconn)
    page = ops.get("/ops/rq/", headers=BEARER)
    assert page.status_code == 200
    assert rconn.connection_pool.connection_kwargs["password"] not in page.text  # its Redis URL shown masked
    assert "RQ Dashboard" in page.text or "rq" in page.text.lower()
    jobs = ops.get("/ops/rq/0/data/jobs/koppel/failed/10/asc/1.json", headers=BEARER)
    assert jobs.status_code == 200
    assert job_id in jobs.text
    detail = ops.get(f"/ops/rq/0/data/job/{job_id}.json", headers=BEARER).json()
    assert "not a Koppel event envelope" in detail["exc_info"]
    assert ops.post(f"/ops/rq/job/{job_id}/requeue", headers=BEARER).status_code == 200
    assert job_id not in queue_of(rconn).failed_job_registry.get_job_ids()
    assert job_id in queue_of(rconn).job_ids


def test_logging_out_of_the_console_ends_access_to_the_operator_pages(ops):
    log_in(ops)
    assert ops.get("/ops/rq/").status_code == 200
    home = ops.get("/console/")
    csrf = home.text.split('name="csrf" value="')[1].split('"')[0]
    assert 'href="/ops/rq/"' in home.text  # the console's menu links the dashboard
    ops.post("/console/logout", data={"csrf": csrf})
    assert ops.get("/ops/rq/", follow_redirects=False).status_code == 303


def test_operator_routes_are_off_without_an_admin_token(http):
    response = http.get("/ops/rq/", headers=basic("anything"))
    assert response.status_code == 403
    assert "admin_token" in response.json()["message"]


def test_metrics_auth_without_an_admin_token_is_a_config_problem():
    with pytest.raises(ConfigError, match=r"metrics_auth = true needs gateway\.admin_token"):
        make_config(metrics_auth=True)


def test_metrics_are_open_by_default(ops):
    assert ops.get("/metrics").status_code == 200


def test_metrics_behind_the_admin_token_when_switched_on(redis_url):
    live = serve(create_app(make_config(admin_token="env:ADMIN_TOKEN", metrics_auth=True), redis_url))
    try:
        with httpx.Client(base_url=live.url, timeout=10) as client:
            for headers in ({}, {"authorization": "Bearer wrong"}, basic(TOKEN)):
                refused = client.get("/metrics", headers=headers)
                assert refused.status_code == 401
                assert "metrics_auth" in refused.json()["message"]
                assert "koppel_" not in refused.text
            assert "koppel_jobs_failed" in client.get("/metrics", headers=BEARER).text
    finally:
        live.stop()


@pytest.fixture
def config_file(tmp_path, monkeypatch, redis_url):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", redis_url)
    path = tmp_path / "koppel.toml"
    path.write_text(
        "\n".join(
            [
                '[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"',
                '[[endpoints]]\nid = "sq"\nkind = "squarespace"\nsecret = "env:SQ_SECRET"',
                '[[systems]]\nid = "exact"\nkind = "exactonline"',
                '[[integrations]]\nid = "shop-to-exact"\nsource = "shop"\ntarget = "exact"\nflows = ["orders"]',
                '[[integrations]]\nid = "sq-to-exact"\nsource = "sq"\ntarget = "exact"\nflows = ["orders"]',
            ]
        )
    )
    return str(path)


def test_replay_by_job_id(config_file, rconn, capsys):
    job_id = failed_job(rconn)
    assert main(["replay", "--config", config_file, "--job", job_id]) == 0
    assert "requeued 1 failed job(s)" in capsys.readouterr().out
    assert job_id in Queue("koppel", connection=rconn, serializer=JSONSerializer).job_ids


def test_replay_by_integration_takes_only_its_jobs(config_file, rconn, capsys):
    shop_job = failed_job(rconn, "shop")
    sq_job = failed_job(rconn, "sq")
    assert main(["replay", "--config", config_file, "--integration", "sq-to-exact"]) == 0
    queue = Queue("koppel", connection=rconn, serializer=JSONSerializer)
    assert queue.job_ids == [sq_job]
    assert shop_job in queue.failed_job_registry.get_job_ids()


def test_failed_jobs_are_grouped_by_endpoint_in_one_pass(rconn, monkeypatch):
    from rq.job import Job

    from gateway import replay
    from tests.console_support import failed_jobs

    monkeypatch.setattr(replay, "META_BATCH", 2)  # several pipelined rounds
    shop = failed_jobs(rconn, 3)
    sq = failed_jobs(rconn, 2, endpoint="sq", first=9001)
    odd = failed_jobs(rconn, 2, endpoint="x", first=9101)
    rconn.hset(Job.key_for(odd[0]), "meta", "not json")  # meta another program wrote
    rconn.hdel(Job.key_for(odd[1]), "meta")
    grouped = replay.failed_ids_by_endpoint(rconn, make_config())
    assert {endpoint: sorted(ids) for endpoint, ids in grouped.items()} == {"shop": sorted(shop), "sq": sorted(sq),
                                                                            "": sorted(odd)}  # fmt: skip


def test_replay_all(config_file, rconn):
    ids = {failed_job(rconn, "shop"), failed_job(rconn, "sq")}
    assert main(["replay", "--config", config_file, "--all"]) == 0
    assert set(Queue("koppel", connection=rconn, serializer=JSONSerializer).job_ids) == ids


def test_replay_of_an_unknown_job_says_so_and_exits_1(config_file, capsys):
    assert main(["replay", "--config", config_file, "--job", "no-such-job"]) == 1
    assert "no-such-job is not in the failed registry" in capsys.readouterr().err


def test_replay_of_an_unknown_integration_is_a_usage_error(config_file, capsys):
    assert main(["replay", "--config", config_file, "--integration", "nope"]) == 2
    assert "no integration 'nope'" in capsys.readouterr().err


def test_activity_lists_an_integrations_events_newest_last_filtered_by_outcome(config_file, rconn, capsys):
    import time

    from gateway.activity import Activity, ActivityLog

    log = ActivityLog(rconn)
    now = time.time()
    # ids no clock time can contain (the table shows times: "08:41" once made "41" appear early)
    for rid, outcome, reason in (("ord-A41", "created", ""), ("ord-B42", "failed", "SKU(s) KOP-9 do not exist")):
        log.record(Activity(integration="shop-to-exact", flow="orders", topic="order.created", resource_id=rid,
                            outcome=outcome, received_at=now - 1, done_at=now, reason=reason))  # fmt: skip
    assert main(["activity", "--config", config_file, "--integration", "shop-to-exact"]) == 0
    out = capsys.readouterr().out
    assert "created" in out and "KOP-9" in out and out.index("ord-A41") < out.index("ord-B42")
    assert main(["activity", "--config", config_file, "--integration", "shop-to-exact", "--outcome", "created"]) == 0
    out = capsys.readouterr().out
    assert "ord-A41" in out and "KOP-9" not in out


def test_activity_shows_an_error_level_skip(config_file, rconn, capsys):
    import time

    from gateway.activity import Activity, ActivityLog

    now = time.time()
    ActivityLog(rconn).record(Activity(integration="shop-to-exact", flow="orders", topic="order.updated",
                                       resource_id="ord-C43", outcome="skipped", received_at=now - 1, done_at=now,
                                       reason="already in Business Central", level="error"))  # fmt: skip
    assert main(["activity", "--config", config_file, "--integration", "shop-to-exact"]) == 0
    assert "skipped (error)" in capsys.readouterr().out


def test_activity_of_an_unknown_integration_is_a_usage_error(config_file, capsys):
    assert main(["activity", "--config", config_file, "--integration", "nope"]) == 2
    assert "no integration 'nope'" in capsys.readouterr().err


def test_activity_shows_a_failed_entrys_job_id_which_replay_takes(config_file, rconn, redis_url, capsys, monkeypatch):
    """The id in `koppel activity` is the one `koppel replay --job ID` takes: no detour via rq-dashboard."""
    import re
    import time

    from gateway.envelope import Envelope, Event
    from gateway.errors import PermanentError
    from gateway.ingest import Ingestor
    from workers import flows
    from workers.inbox import InboxPump
    from workers.worker import run_worker

    def missing_sku(work):
        raise PermanentError("SKU(s) KOP-9 do not exist in Exact Online; create them there, then replay")

    flows.flow_function("orders")  # load built-ins first, then override
    monkeypatch.setitem(flows.FLOWS, "orders", missing_sku)
    envelope = Envelope.wrap(Event("order.created", "order", "ord-D44", f"k-{time.time_ns()}", {"id": 44}),
                             source="woocommerce", endpoint="shop")  # fmt: skip
    Ingestor(rconn).store([envelope])
    InboxPump(rconn, "koppel").drain(timeout=10)
    run_worker(make_config(), redis_url, burst=True)
    assert main(["activity", "--config", config_file, "--integration", "shop-to-exact", "--outcome", "failed"]) == 0
    shown = re.findall(r"\b[0-9a-f]{32}\b", capsys.readouterr().out)
    assert len(shown) == 1
    assert main(["replay", "--config", config_file, "--job", shown[0]]) == 0
    assert "requeued 1 failed job(s)" in capsys.readouterr().out
    assert Queue("koppel", connection=rconn, serializer=JSONSerializer).job_ids == shown


def test_metrics_count_the_failed_jobs_of_koppels_queue(ops, rconn):
    assert 'koppel_jobs_failed{queue="koppel"} 0.0' in ops.get("/metrics").text
    job_id = failed_job(rconn)
    text = ops.get("/metrics").text
    assert "# TYPE koppel_jobs_failed gauge" in text
    assert 'koppel_jobs_failed{queue="koppel"} 1.0' in text
    Queue("koppel", connection=rconn, serializer=JSONSerializer).failed_job_registry.requeue(job_id)
    assert 'koppel_jobs_failed{queue="koppel"} 0.0' in ops.get("/metrics").text  # replayed: no longer failed
