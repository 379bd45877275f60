"""The receiver's plain-ASGI webhook path (gateway.app.Gateway) against the router's, in process, real Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.responses import JSONResponse

from gateway.app import Gateway, _summary, create_app
from gateway.ingest import Accepted
from tests.conftest import make_config, woo_headers, woo_order

pytestmark = pytest.mark.integration


def scope_of(path: str, headers: dict[str, str], body: bytes, root_path: str = "") -> dict[str, Any]:
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
        "root_path": root_path,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw,
    }


async def call(app: Gateway, scope: dict[str, Any], messages: list[dict[str, Any]]) -> tuple[int, dict, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    headers = {name.decode(): value.decode() for name, value in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def run(redis_url: str, requests: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[tuple[int, dict, bytes]]:
    app = create_app(make_config(), redis_url)

    async def main() -> list[tuple[int, dict, bytes]]:
        await app.state.ingestor.start()
        try:
            return [await call(app, scope, messages) for scope, messages in requests]
        finally:
            await app.state.ingestor.stop()
            await app.state.ingestor.async_connection.aclose()

    return asyncio.run(main())


def test_summary_is_what_jsonresponse_renders():
    for accepted in ([], [Accepted("ab" * 16, False)], [Accepted("01" * 16, False), Accepted("x", True)]):
        jobs = [a.job_id for a in accepted if not a.duplicate]
        expected = {"status": "accepted", "queued": len(jobs), "duplicates": len(accepted) - len(jobs), "jobs": jobs}
        body, queued, duplicates = _summary(accepted)
        assert body == JSONResponse(expected).body
        assert (queued, duplicates) == (expected["queued"], expected["duplicates"])


def test_fast_path_and_router_answer_alike(redis_url):
    first, second = woo_order(501), woo_order(502)
    fast = scope_of("/webhooks/shop", woo_headers(first), first)
    routed = scope_of("/base/webhooks/shop", woo_headers(second), second, root_path="/base")  # through the router
    chunked = [
        {"type": "http.request", "body": second[:10], "more_body": True},
        {"type": "http.request", "body": second[10:]},
    ]
    answers = run(redis_url, [(fast, [{"type": "http.request", "body": first}]), (routed, chunked)])
    for status, headers, body in answers:
        assert status == 202
        assert headers == {"content-length": str(len(body)), "content-type": "application/json"}
        assert json.loads(body)["queued"] == 1


def test_a_client_gone_before_its_body_is_400_and_nothing_is_stored(redis_url, rconn):
    body = woo_order(503)
    [(status, _, _)] = run(redis_url, [(scope_of("/webhooks/shop", woo_headers(body), body), [])])
    assert status == 400
    assert rconn.xlen("koppel:inbox:koppel") == 0


def test_unknown_endpoint_on_the_fast_path_is_a_json_404(redis_url):
    [(status, headers, body)] = run(redis_url, [(scope_of("/webhooks/nope", {}, b"{}"), [{"type": "http.request"}])])
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "unknown_endpoint"
