"""The receiver over real HTTP against a real Redis: answers, durability, dedupe, metrics."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from gateway import keys
from gateway.app import create_app
from gateway.redisserver import EmbeddedRedis, free_port
from tests.conftest import SECRETS, make_config, serve, woo_headers, woo_order
from workers.inbox import pump_for

pytestmark = pytest.mark.integration


def queued_jobs(conn: redis.Redis) -> list:
    """The RQ jobs of the accepted events, once a worker's inbox pump made them."""
    pump_for(conn, make_config().gateway).drain(timeout=10)
    queue = Queue("koppel", connection=conn, serializer=JSONSerializer)
    return queue.get_jobs()


def test_accepts_signed_order_with_202_and_queues_one_job_carrying_the_envelope(http, rconn):
    body = woo_order(101)
    response = http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    assert response.status_code == 202
    assert response.json()["queued"] == 1
    jobs = queued_jobs(rconn)
    assert len(jobs) == 1
    envelope = jobs[0].args[0]
    assert jobs[0].func_name == "workers.jobs.process_event"
    assert envelope["source"] == "woocommerce"
    assert envelope["endpoint"] == "shop"
    assert envelope["topic"] == "order.created"
    assert envelope["resource_id"] == "101"
    assert envelope["payload"]["billing"]["first_name"] == "J\u00f6rg"
    assert envelope["received_at"]
    assert envelope["delivery_key"]


def test_job_never_carries_credentials(http, rconn):
    body = woo_order(102)
    http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    raw = b"".join(rconn.hget(key, field) or b"" for key in rconn.keys("rq:job:*") for field in rconn.hkeys(key))
    for secret in (*SECRETS.values(), "wc&secret-\u00e9"):
        assert secret.encode() not in raw
    assert b"x-wc-webhook-signature" not in raw.lower()


def test_unknown_endpoint_is_404_and_says_which(http, rconn):
    response = http.post("/webhooks/nope", content=b"{}")
    assert response.status_code == 404
    assert "nope" in response.json()["message"]
    assert queued_jobs(rconn) == []


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, b: (h.pop("x-wc-webhook-signature"), b)[1], "missing_signature"),
        (lambda h, b: b.replace(b"processing", b"completed!"), "bad_signature"),
        (
            lambda h, b: (
                h.__setitem__("x-wc-webhook-signature", "AAAA" + h["x-wc-webhook-signature"][4:]),
                b,
            )[1],
            "bad_signature",
        ),
    ],
    ids=["missing", "tampered-body", "wrong-signature"],
)
def test_bad_or_missing_signature_is_401_and_nothing_is_queued(http, rconn, mutate, reason):
    body = woo_order(103)
    headers = woo_headers(body)
    body = mutate(headers, body)
    response = http.post("/webhooks/shop", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == reason
    assert queued_jobs(rconn) == []


def test_error_bodies_never_echo_the_secret(http):
    body = woo_order(104)
    headers = woo_headers(body)
    headers["x-wc-webhook-signature"] = "bogus"
    text = http.post("/webhooks/shop", content=body, headers=headers).text
    for secret in (*SECRETS.values(), "wc&secret-\u00e9"):
        assert secret not in text


def test_body_over_the_cap_is_413_with_or_without_content_length(http, rconn):
    big = b'{"id":1,"pad":"' + b"x" * (70 * 1024) + b'"}'
    response = http.post("/webhooks/shop", content=big, headers=woo_headers(big))
    assert response.status_code == 413
    assert "65536" in response.json()["message"]

    def chunks():
        for _ in range(70):
            yield b"x" * 1024

    response = http.post("/webhooks/shop", content=chunks(), headers=woo_headers(big))
    assert response.status_code == 413
    assert queued_jobs(rconn) == []


def test_malformed_body_with_valid_signature_is_400(http, rconn):
    body = b'{"id": 5, "status": '
    response = http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    assert response.status_code == 400
    assert queued_jobs(rconn) == []


def test_a_lone_surrogate_escape_is_400_not_500_for_every_kind_and_nothing_is_queued(http, rconn):
    """JSON may spell "\\ud800", but it is not Unicode: nothing could store it, so it is refused."""
    import hashlib
    import hmac

    body = b'{"id":5,"status":"processing","billing":{"first_name":"\\ud800"}}'
    answer = http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    assert (answer.status_code, answer.json()["error"]) == (400, "malformed")
    assert "lone surrogate" in answer.json()["message"]
    content = '{"Topic":"SalesOrders","Action":"Update","Division":1,"Key":"\\udfff","EventCreatedOn":"x"}'
    code = hmac.new(SECRETS["EXACT_SECRET"].encode(), content.encode(), hashlib.sha256).hexdigest().upper()
    exact = http.post("/webhooks/exact-hooks", content=f'{{"Content":{content},"HashCode":"{code}"}}'.encode())
    assert exact.status_code == 400, exact.text
    assert rconn.xlen("koppel:inbox:koppel") == 0


def test_duplicate_delivery_is_acknowledged_without_a_second_job(http, rconn):
    body = woo_order(105)
    first = http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    second = http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json()["duplicates"] == 1
    assert second.json()["queued"] == 0
    assert len(queued_jobs(rconn)) == 1


def test_a_later_modification_of_the_same_order_is_a_new_event(http, rconn):
    answers = []
    for modified in ("2026-11-20T10:00:00", "2026-11-20T10:05:00"):
        body = woo_order(106, modified)
        answers.append(http.post("/webhooks/shop", content=body, headers=woo_headers(body)))
    assert [(a.status_code, a.json()["queued"]) for a in answers] == [(202, 1), (202, 1)]
    # both waited in the inbox together: one job of the order, with the later payload (workers/inbox.py)
    [job] = queued_jobs(rconn)
    assert [m["id"] for m in job.kwargs["group"]] == [a.json()["jobs"][0] for a in answers]
    assert job.args[0]["payload"]["date_modified_gmt"] == "2026-11-20T10:05:00"


def test_concurrent_duplicates_become_exactly_one_job(gateway, rconn):
    body = woo_order(107)
    headers = woo_headers(body)

    def send(_: int) -> httpx.Response:
        return httpx.post(f"{gateway.url}/webhooks/shop", content=body, headers=headers, timeout=10)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(send, range(40)))
    assert {r.status_code for r in responses} == {202}
    assert sum(r.json()["queued"] for r in responses) == 1
    assert len(queued_jobs(rconn)) == 1


def test_many_concurrent_distinct_orders_are_each_queued_once(gateway, rconn):
    def send(i: int) -> httpx.Response:
        body = woo_order(1000 + i)
        return httpx.post(f"{gateway.url}/webhooks/shop", content=body, headers=woo_headers(body), timeout=10)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(send, range(120)))
    assert {r.status_code for r in responses} == {202}
    ids = sorted(int(job.args[0]["resource_id"]) for job in queued_jobs(rconn))
    assert ids == list(range(1000, 1120))


def test_woocommerce_ping_is_answered_200_and_not_queued(http, rconn):
    response = http.post(
        "/webhooks/shop",
        content=b"webhook_id=7",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "user-agent": "WooCommerce/9.0 Hookshot",
        },
    )
    assert response.status_code == 200
    assert queued_jobs(rconn) == []


def test_business_central_handshake_echoes_the_token_as_plain_text(http, rconn):
    response = http.post("/webhooks/bc", params={"validationToken": "tok-123"})
    assert response.status_code == 200
    assert response.text == "tok-123"
    assert response.headers["content-type"].startswith("text/plain")
    assert queued_jobs(rconn) == []


def test_exact_validation_request_is_answered(http, rconn):
    assert http.post("/webhooks/exact-hooks", content=b"").status_code == 200
    assert queued_jobs(rconn) == []


def test_healthz_readyz_and_metrics(http, rconn):
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    body = woo_order(108)
    http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    http.post("/webhooks/shop", content=b"{}", headers={"x-wc-webhook-topic": "order.created"})
    assert 'koppel_inbox_depth{queue="koppel"} 1.0' in http.get("/metrics").text  # stored, not yet a job
    assert len(queued_jobs(rconn)) == 1  # a worker's pump made the job
    text = http.get("/metrics").text
    assert 'koppel_webhooks_received_total{endpoint="shop",kind="woocommerce"} 3.0' in text
    assert 'koppel_events_queued_total{endpoint="shop"} 1.0' in text
    assert 'koppel_events_duplicate_total{endpoint="shop"} 1.0' in text
    assert 'koppel_webhooks_rejected_total{endpoint="shop",reason="missing_signature"} 1.0' in text
    assert 'koppel_queue_depth{queue="koppel"} 1.0' in text
    assert 'koppel_inbox_depth{queue="koppel"} 0.0' in text


def test_logs_carry_no_secret_and_no_payload(http, caplog):
    caplog.set_level(logging.DEBUG)
    body = woo_order(109)
    headers = woo_headers(body)
    headers["x-wc-webhook-signature"] = "bad"
    http.post("/webhooks/shop", content=body, headers=headers)
    http.post("/webhooks/shop", content=body, headers=woo_headers(body))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "jorg@example.com" not in logged
    for secret in (*SECRETS.values(), "wc&secret-\u00e9"):
        assert secret not in logged


def test_redis_down_answers_503_with_retry_after_and_nothing_is_lost_once_it_returns(tmp_path):
    """Without the journal (`journal = false`; with it: tests/test_journal.py)."""
    server = EmbeddedRedis(data_dir=tmp_path, port=free_port())
    server.start()
    live = serve(create_app(make_config(journal=False), server.url))
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            before = woo_order(201)
            assert http.post("/webhooks/shop", content=before, headers=woo_headers(before)).status_code == 202

            server.stop()
            during = woo_order(202)
            response = http.post("/webhooks/shop", content=during, headers=woo_headers(during))
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) > 0
            assert "nothing was queued" in response.json()["message"]
            assert http.get("/readyz").status_code == 503

            server.start()  # same data dir and port: the AOF brings back what was stored
            # the sender retries what got a 503
            assert http.post("/webhooks/shop", content=during, headers=woo_headers(during)).status_code == 202
            assert http.get("/readyz").status_code == 200
        conn = redis.Redis.from_url(server.url)
        ids = sorted(job.args[0]["resource_id"] for job in queued_jobs(conn))
        assert ids == ["201", "202"]
        conn.close()
    finally:
        live.stop()
        server.stop()


def test_job_is_processed_by_a_real_worker(http, rconn, redis_url, config):
    from workers.worker import run_worker

    body = woo_order(301).replace(b'"processing"', b'"pending"')  # a status the order flow skips
    job_id = http.post("/webhooks/shop", content=body, headers=woo_headers(body)).json()["jobs"][0]
    assert run_worker(config, redis_url, burst=True)
    # run by the worker's inbox pump itself ([gateway] direct_events): no RQ job, its outcome kept as a finished
    # job's would be
    assert Queue("koppel", connection=rconn, serializer=JSONSerializer).fetch_job(job_id) is None
    done = json.loads(rconn.get(keys.done(job_id)) or b"{}")
    assert done["id"] == job_id and done["status"] == "finished"
    result = done["result"]
    assert result["integrations"] == {
        "shop-to-exact": {"outcome": "skipped", "number": "301", "reason": "status 'pending' is not synced"}
    }
    assert result["flow"] == "orders"
    assert json.dumps(result).find("jorg@example.com") == -1
    from gateway.activity import ActivityLog

    [entry] = ActivityLog(rconn).entries("shop-to-exact")
    assert (entry.topic, entry.resource_id, entry.number, entry.outcome, entry.job_id) == (
        "order.created",
        "301",
        "301",
        "skipped",
        job_id,
    )
    assert entry.reason == "status 'pending' is not synced" and entry.done_at >= entry.received_at


def test_unrouted_paths_and_wrong_methods_get_json_errors(http):
    response = http.post("/webhooks/a/b", content=b"{}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    response = http.get("/webhooks/shop")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
