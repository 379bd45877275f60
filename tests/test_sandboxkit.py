"""The sandbox kit on its own: a tiny "shelf" sandbox built from it, driven through httpx.ASGITransport and,
where the wire matters (a dropped connection), real HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import connectors.sandboxkit as kit
from connectors.sandboxkit import (
    BearerTokens,
    Control,
    Fault,
    OAuthServer,
    Pipeline,
    RegisteredApp,
    Sandbox,
    WebhookSender,
    basic_credentials,
    cursor_page,
    decode_cursor,
    echoes,
    encode_cursor,
    hmac_signer,
    link_headers,
    offset_page,
    sandbox_app,
    secret_equals,
)
from gateway.stack import serve

REDIRECT = "https://koppel.example/callback"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ShelfError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Shelf(Sandbox):
    """Items behind Basic auth (offset pages) and behind OAuth bearer tokens (cursor pages)."""

    def __init__(self, clock: Clock, *, auto_approve: bool = True, grants: tuple[str, ...] = ()) -> None:
        super().__init__(clock)
        self.items = [{"id": n, "name": f"item {n}"} for n in range(1, 8)]
        self.app = RegisteredApp("shelf-app", "shelf-secret", (REDIRECT,), auto_approve=auto_approve,
                                 token_lifetime=600, refresh_window=30, code_lifetime=180)  # fmt: skip
        self.tokens = BearerTokens(clock)
        self.oauth = OAuthServer(self.app, self.tokens, grant_types=grants or ("authorization_code", "refresh_token"),
                                 title="Shelf")  # fmt: skip

    def state(self) -> dict[str, Any]:
        return {"items": len(self.items), **super().state()}

    def reset(self, options: Any = None) -> None:
        super().reset(options)
        self.items = []


def create_shelf(clock: Clock, **options: Any) -> Starlette:
    shelf = Shelf(clock, **options)

    def shelf_error(request: Request, exc: ShelfError) -> Response:
        return JSONResponse({"message": str(exc)}, exc.status)

    def fault(f: Fault) -> Response:
        return JSONResponse({"message": "injected"}, f.status or 500)

    async def basic(request: Request) -> None:
        given = basic_credentials(request)
        if given is None or not (secret_equals(given[0], "user") and secret_equals(given[1], "pass")):
            raise ShelfError(401, "who are you?")

    async def bearer(request: Request) -> Response | None:
        return None if shelf.tokens.valid(request) else JSONResponse({"message": "token"}, 401)

    async def items(request: Request) -> Response:
        page = offset_page(shelf.items, int(request.query_params.get("page", 1)), 3)
        response = JSONResponse(page.items, headers={"X-Total": str(page.total)})
        for link in link_headers(str(request.url.replace(query="")), request.query_params.multi_items(), page):
            response.raw_headers.append((b"link", link.encode()))
        return response

    async def item(request: Request) -> Response:
        found = [i for i in shelf.items if i["id"] == request.path_params["id"]]
        if not found:
            raise ShelfError(404, "no such item")
        return JSONResponse(found[0])

    async def cursor_items(request: Request) -> Response:
        after = request.query_params.get("cursor")
        page = cursor_page(shelf.items, key=lambda i: i["id"], after=decode_cursor(after) if after else None, size=3)
        return JSONResponse({"items": page.items, "next": None if page.after is None else encode_cursor(page.after)})

    errors = {ShelfError: shelf_error}
    v1 = Pipeline([shelf.counters.step, basic, shelf.faults.step(fault)], errors, prefix="/v1")
    v2 = Pipeline([shelf.counters.step, bearer, shelf.faults.step(fault)], errors, prefix="/v2")
    routes = [
        v1.route("/items", items),
        v1.route("/items/{id:int}", item),
        v2.route("/items", cursor_items),
        Route("/oauth/authorize", shelf.oauth.authorize, methods=["GET", "POST"]),
        Pipeline([shelf.counters.step]).route("/oauth/token", shelf.oauth.token, methods=["POST"], name="token"),
        Control(shelf).mount(),
    ]
    return sandbox_app(shelf, routes)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> Starlette:
    return create_shelf(clock)


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shelf")


AUTH = ("user", "pass")


def test_the_public_names_are_exactly_the_kits_surface():
    assert kit.__all__ == sorted(kit.__all__)
    assert set(kit.__all__) == {
        "ALL_METHODS", "BearerTokens", "CallCounter", "ConnectionDropped", "Control", "CursorPage", "Delivery",
        "Fault", "Faults", "OAuthServer", "OAuthSettings", "Page", "Pipeline", "RegisteredApp", "Sandbox",
        "WebhookSender", "add_headers", "basic_credentials", "cursor_page", "decode_cursor", "echoes",
        "encode_cursor", "hmac_signer", "link_headers", "offset_page", "request_fields", "route_name", "sandbox_app",
        "secret_equals",
    }  # fmt: skip
    assert all(hasattr(kit, name) for name in kit.__all__)


# -- fault injection ---------------------------------------------------------------------------------------


def test_a_429_storm_answers_every_request_with_retry_after_until_it_passes(app, clock):
    async def scenario() -> None:
        async with client(app) as http:
            fail = await http.post("/sandbox/fail", json={"status": 429, "seconds": 30, "retry_after": 5})
            assert fail.json() == {"pending_faults": 1}
            answers = [await http.get("/v1/items", auth=AUTH) for _ in range(4)]
            assert [(a.status_code, a.headers.get("retry-after")) for a in answers] == [(429, "5")] * 4
            assert answers[0].json() == {"message": "injected"}  # in the sandbox's own error shape
            clock.now += 31
            assert (await http.get("/v1/items", auth=AUTH)).status_code == 200
            assert (await http.get("/sandbox/faults")).json() == {"pending_faults": 0, "faults": []}

    run(scenario)


def test_queued_faults_fail_the_next_requests_in_order_after_auth(app):
    async def scenario() -> None:
        async with client(app) as http:
            app.state.sandbox.faults.add(Fault(503, retry_after=2), times=2)  # in process
            await http.post("/sandbox/fail", json={"status": 500})
            assert (await http.get("/sandbox/faults")).json()["pending_faults"] == 3
            assert (await http.get("/v1/items")).status_code == 401  # the auth step comes first: no fault spent
            statuses = [(await http.get("/v1/items", auth=AUTH)) for _ in range(4)]
            assert [(r.status_code, r.headers.get("retry-after")) for r in statuses] == [
                (503, "2"), (503, "2"), (500, None), (200, None),
            ]  # fmt: skip
            await http.post("/sandbox/fail", json={"status": 502, "times": 5})
            cleared = await http.delete("/sandbox/faults")
            assert cleared.json() == {"pending_faults": 0, "faults": []}

    run(scenario)


def test_a_slow_answer_comes_after_its_delay_and_may_still_be_an_error(app):
    async def scenario() -> None:
        async with client(app) as http:
            await http.post("/sandbox/fail", json={"delay": 0.3})
            started = time.monotonic()
            slow = await http.get("/v1/items", auth=AUTH)
            assert slow.status_code == 200 and time.monotonic() - started >= 0.3
            await http.post("/sandbox/fail", json={"delay": 0.2, "status": 504})
            started = time.monotonic()
            assert (await http.get("/v1/items", auth=AUTH)).status_code == 504
            assert time.monotonic() - started >= 0.2

    run(scenario)


def test_a_dropped_connection_is_a_transport_error_through_asgi_transport(app):
    async def scenario() -> None:
        async with client(app) as http:
            await http.post("/sandbox/fail", json={"drop": True})
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get("/v1/items", auth=AUTH)
            assert (await http.get("/v1/items", auth=AUTH)).status_code == 200

    run(scenario)


@pytest.mark.integration
def test_a_dropped_connection_over_real_http_closes_mid_response(app):
    live = serve(app, name="shelf sandbox")
    try:
        with httpx.Client(base_url=live.url, timeout=5) as http:
            http.post("/sandbox/fail", json={"drop": True, "times": 2}).raise_for_status()
            for _ in range(2):
                with pytest.raises(httpx.RemoteProtocolError):
                    http.get("/v1/items", auth=AUTH)
            assert http.get("/v1/items", auth=AUTH).status_code == 200
    finally:
        live.stop()


@pytest.mark.parametrize(
    "fields",
    [{"status": 999}, {"status": "x"}, {"times": 0}, {"seconds": -1}, {"status": None}, {"retry_after": -1}],
)
def test_bad_fault_fields_answer_400_and_queue_nothing(app, fields):
    async def scenario() -> None:
        async with client(app) as http:
            refused = await http.post("/sandbox/fail", json=fields)
            assert refused.status_code == 400 and refused.json()["error"].startswith("bad sandbox request")
            assert app.state.sandbox.faults.pending == 0

    run(scenario)


# -- counters and control routes ------------------------------------------------------------------------------


def test_counters_count_each_method_and_route_and_reset_empties_them(app):
    async def scenario() -> None:
        async with client(app) as http:
            await http.get("/v1/items", auth=AUTH)
            await http.get("/v1/items/2", auth=AUTH)
            await http.get("/v1/items/99", auth=AUTH)
            await http.get("/v1/items/1")  # refused, but counted: the count step comes before auth
            counts = (await http.get("/sandbox/counters")).json()
            assert counts == {"total": 4, "by_endpoint": {"GET items": 1, "GET items/{id}": 3}}
            assert app.state.sandbox.counters["GET items/{id}"] == 3
            assert (await http.get("/sandbox/state")).json()["items"] == 7
            assert (await http.post("/sandbox/reset")).json() == {"reset": True}
            assert (await http.get("/sandbox/state")).json() == {"items": 0, "calls": {"total": 0, "by_endpoint": {}},
                                                                 "pending_faults": 0}  # fmt: skip

    run(scenario)


def test_unknown_control_routes_answer_404_and_wrong_methods_405(app):
    async def scenario() -> None:
        async with client(app) as http:
            unknown = await http.post("/sandbox/nothing")
            assert unknown.status_code == 404 and unknown.json() == {"error": "unknown sandbox route /sandbox/nothing"}
            assert (await http.get("/sandbox/reset")).status_code == 405
            assert (await http.post("/sandbox/reset", content=b"{broken")).status_code == 400

    run(scenario)


# -- paging --------------------------------------------------------------------------------------------------


def test_offset_pages_carry_the_total_and_links_to_their_neighbours(app):
    async def scenario() -> None:
        async with client(app) as http:
            second = await http.get("/v1/items", params={"page": 2, "q": "x"}, auth=AUTH)
            assert [i["id"] for i in second.json()] == [4, 5, 6] and second.headers["x-total"] == "7"
            assert second.headers.get_list("link") == [
                '<http://shelf/v1/items?q=x&page=1>; rel="prev"', '<http://shelf/v1/items?q=x&page=3>; rel="next"',
            ]  # fmt: skip
            beyond = await http.get("/v1/items", params={"page": 9}, auth=AUTH)
            assert beyond.json() == [] and beyond.headers.get_list("link") == [
                '<http://shelf/v1/items?page=3>; rel="prev"'
            ]

    run(scenario)
    page = offset_page(list(range(10)), 4, 3)
    assert (page.items, page.pages, page.previous, page.next) == ([9], 4, 3, None)
    with pytest.raises(ValueError):
        offset_page([], 0, 10)


def test_cursor_pages_continue_after_the_last_key_and_stop_at_the_end(app, clock):
    async def scenario() -> None:
        async with client(app) as http:
            token = app.state.sandbox.tokens.issue(60)
            headers = {"Authorization": f"Bearer {token}"}
            seen, cursor = [], None
            while True:
                query = {"cursor": cursor} if cursor else {}
                page = (await http.get("/v2/items", params=query, headers=headers)).json()
                seen.append([i["id"] for i in page["items"]])
                if (cursor := page["next"]) is None:
                    break
            assert seen == [[1, 2, 3], [4, 5, 6], [7]]

    run(scenario)
    rows = [{"k": k} for k in (5, 1, 3, 9, 7)]
    topped = cursor_page(rows, key=lambda r: r["k"], size=2, top=3)
    assert ([r["k"] for r in topped.items], topped.after) == ([1, 3], 3)
    last = cursor_page(rows, key=lambda r: r["k"], after=3, size=2, top=1)
    assert ([r["k"] for r in last.items], last.after) == ([5], None)
    assert decode_cursor(encode_cursor({"after": 3, "day": "2026-11-20"})) == {"after": 3, "day": "2026-11-20"}
    with pytest.raises(ValueError):
        decode_cursor("not a cursor!")


# -- auth stubs ----------------------------------------------------------------------------------------------


def test_basic_auth_accepts_the_pair_and_refuses_a_wrong_or_malformed_header(app):
    async def scenario() -> None:
        async with client(app) as http:
            assert (await http.get("/v1/items", auth=AUTH)).status_code == 200
            assert (await http.get("/v1/items", auth=("user", "nope"))).status_code == 401
            malformed = await http.get("/v1/items", headers={"Authorization": "Basic !!!"})
            assert malformed.status_code == 401 and malformed.json() == {"message": "who are you?"}

    run(scenario)


def test_bearer_tokens_expire_on_the_sandbox_clock_and_can_all_expire_at_once(app, clock):
    async def scenario() -> None:
        tokens = app.state.sandbox.tokens
        async with client(app) as http:
            short, long = tokens.issue(10), tokens.issue(1000)
            assert (await http.get("/v2/items", headers={"Authorization": f"Bearer {short}"})).status_code == 200
            clock.now += 11
            assert (await http.get("/v2/items", headers={"Authorization": f"Bearer {short}"})).status_code == 401
            assert (await http.get("/v2/items", headers={"Authorization": f"bearer {long}"})).status_code == 200
            assert tokens.expire_all() == 2 and tokens.live() == 0
            assert (await http.get("/v2/items", headers={"Authorization": f"Bearer {long}"})).status_code == 401

    run(scenario)


def _form(code: str = "", **fields: str) -> dict[str, str]:
    return {"client_id": "shelf-app", "client_secret": "shelf-secret", "redirect_uri": REDIRECT, "code": code, **fields}


def test_the_code_flow_asks_consent_and_its_refresh_tokens_rotate(clock):
    app = create_shelf(clock, auto_approve=False)
    oauth = app.state.sandbox.oauth

    async def scenario() -> None:
        async with client(app) as http:
            query = {"client_id": "shelf-app", "redirect_uri": REDIRECT, "state": "st-1", "response_type": "code"}
            page = await http.get("/oauth/authorize", params=query)
            assert page.status_code == 200 and "<h1>Shelf</h1>" in page.text and 'value="approve"' in page.text
            approved = await http.post("/oauth/authorize", data={**query, "decision": "approve"})
            assert approved.status_code == 302
            back = parse_qs(urlsplit(approved.headers["location"]).query)
            assert back["state"] == ["st-1"]
            tokens = (await http.post("/oauth/token", data=_form(back["code"][0], grant_type="authorization_code")))
            body = tokens.json()
            assert tokens.status_code == 200 and body["token_type"] == "bearer" and body["expires_in"] == 600
            reused = await http.post("/oauth/token", data=_form(back["code"][0], grant_type="authorization_code"))
            assert reused.json()["error"] == "invalid_grant"
            refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
            early = await http.post("/oauth/token", data=_form(**refresh))
            assert early.status_code == 401 and early.json()["error_description"] == "Access token not expired"
            clock.now += 580
            renewed = (await http.post("/oauth/token", data=_form(**refresh))).json()
            assert renewed["refresh_token"] != body["refresh_token"]
            stale = await http.post("/oauth/token", data=_form(**refresh))
            assert stale.json()["error"] == "invalid_grant"  # only the newest refresh token works
            items = await http.get("/v2/items", headers={"Authorization": f"Bearer {renewed['access_token']}"})
            assert items.status_code == 200
            assert (await http.get("/sandbox/counters")).json()["by_endpoint"]["POST token"] == 5

    run(scenario)
    assert (oauth.refreshes, oauth.token_requests) == (1, 5)
    assert oauth.state()["refused"] == {"invalid_grant": 2, "not_expired": 1}
    oauth.reset()
    assert oauth.state() == {"refreshes": 0, "token_requests": 0, "refused": {}, "live_access_tokens": 0,
                             "pending_codes": 0}  # fmt: skip


def test_a_denied_consent_redirects_back_with_access_denied_and_unknown_clients_are_refused(clock):
    app = create_shelf(clock, auto_approve=False)

    async def scenario() -> None:
        async with client(app) as http:
            query = {"client_id": "shelf-app", "redirect_uri": REDIRECT, "state": "s"}
            denied = await http.post("/oauth/authorize", data={**query, "decision": "deny"})
            assert denied.headers["location"] == f"{REDIRECT}?error=access_denied&state=s"
            elsewhere = await http.get("/oauth/authorize", params={**query, "redirect_uri": "https://evil.example/"})
            assert elsewhere.status_code == 400
            stranger = await http.get("/oauth/authorize", params={**query, "client_id": "other"})
            assert stranger.status_code == 400

    run(scenario)


def test_the_client_credentials_grant_issues_a_bearer_token_without_a_refresh_token(clock):
    app = create_shelf(clock, grants=("client_credentials",))

    async def scenario() -> None:
        async with client(app) as http:
            by_form = await http.post("/oauth/token", data=_form(grant_type="client_credentials"))
            assert by_form.status_code == 200 and "refresh_token" not in by_form.json()
            by_basic = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                       auth=("shelf-app", "shelf-secret"))  # fmt: skip
            token = by_basic.json()["access_token"]
            assert (await http.get("/v2/items", headers={"Authorization": f"Bearer {token}"})).status_code == 200
            wrong = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("shelf-app", "x"))
            assert (wrong.status_code, wrong.json()) == (400, {"error": "invalid_client"})
            code_flow = await http.post("/oauth/token", data=_form("c", grant_type="authorization_code"))
            assert code_flow.json() == {"error": "unsupported_grant_type"}

    run(scenario)


# -- the webhook sender --------------------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint answering the statuses given, in turn (then 200), recording what arrived."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], bytes, str]] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body(), request.url.query))
        token = request.query_params.get("validationToken")
        status = self.statuses.pop(0) if self.statuses else 200
        return PlainTextResponse(token or "ok", status_code=status)

    def sender(self, **options: Any) -> WebhookSender:
        return WebhookSender(transport=httpx.ASGITransport(app=self.app), **options)


def test_the_sender_posts_the_exact_bytes_signed_and_logs_each_delivery():
    receiver = Receiver()
    secret = bytes.fromhex("0123456789abcdef")
    body = b'{"id":7,"name":"J\\u00f6rg"}'

    async def scenario() -> None:
        sender = receiver.sender(user_agent="Shelf/1.0")
        signer = hmac_signer("Squarespace-Signature", secret, encoding="hex")
        delivery = await sender.send("http://receiver/hook", body, signer=signer, key="sub-1",
                                     headers={"Content-Type": "application/json"},
                                     on_result=lambda d: {"subscription": "sub-1"})  # fmt: skip
        assert (delivery.status, delivery.success, delivery.failures) == (200, True, 0)
        [entry] = sender.log.entries(subscription="sub-1")
        assert (entry["status_code"], entry["success"], entry["body_bytes"]) == (200, True, len(body))
        await sender.aclose()

    run(scenario)
    headers, received, _ = receiver.received[0]
    assert received == body
    assert headers["squarespace-signature"] == hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert headers["user-agent"] == "Shelf/1.0" and headers["content-type"] == "application/json"
    base64_signed = hmac_signer("X-Sig", b"k")(body)["X-Sig"]
    assert base64_signed == base64.b64encode(hmac.new(b"k", body, hashlib.sha256).digest()).decode()
    assert hmac_signer("X-Sig", b"k", encoding="HEX")(body)["X-Sig"].isupper()


def test_the_sender_counts_consecutive_failures_per_key_until_a_success():
    receiver = Receiver(500, 503, 200, 500)

    async def scenario() -> None:
        sender = receiver.sender()
        results = [await sender.send("http://receiver/hook", b"{}", key="sub-1") for _ in range(4)]
        assert [(d.status, d.failures) for d in results] == [(500, 1), (503, 2), (200, 0), (500, 1)]
        assert (sender.sent, sender.failed, sender.failures("sub-1")) == (4, 3, 1)
        unreachable = WebhookSender(timeout=2)
        gone = await unreachable.send("http://127.0.0.1:9/hook", b"{}", key="sub-2")
        assert (gone.status, gone.error, gone.success) == (None, "ConnectError", False)
        assert unreachable.failures("sub-2") == 1
        assert [e["status_code"] for e in sender.log.entries()] == [500, 503, 200, 500]
        await sender.aclose()
        await unreachable.aclose()

    run(scenario)


def test_a_validation_handshake_succeeds_only_when_the_token_is_echoed():
    receiver = Receiver()

    async def scenario() -> None:
        sender = receiver.sender()
        echoed = await sender.send("http://receiver/hook?validationToken=t-42", b"", success=echoes("t-42"))
        wrong = await sender.send("http://receiver/hook?validationToken=other", b"", success=echoes("t-42"))
        assert (echoed.success, wrong.success) == (True, False)
        await sender.aclose()

    run(scenario)
    assert [query for _, _, query in receiver.received] == ["validationToken=t-42", "validationToken=other"]


def test_scheduled_deliveries_leave_in_order_and_a_reset_drops_those_still_queued():
    receiver = Receiver()

    async def scenario() -> None:
        sender = receiver.sender()
        for n in range(3):
            sender.schedule(lambda n=n: sender.send("http://receiver/hook", str(n).encode()))
        assert sender.queued == 3
        assert await sender.log.wait(lambda: len(sender.log.entries()) == 3, timeout=5)
        sender.schedule(lambda: sender.send("http://receiver/hook", b"dropped"))
        sender.reset()
        await asyncio.sleep(0.05)
        assert sender.log.entries() == [] and sender.queued == 0
        await sender.aclose()

    run(scenario)
    assert [body for _, body, _ in receiver.received] == [b"0", b"1", b"2"]


def test_the_deliveries_route_waits_for_entries_and_filters_on_a_field(clock):
    shelf = Shelf(clock)
    receiver = Receiver()
    sender = receiver.sender()
    control = Control(shelf)
    control.deliveries(sender, subscription_id=int)
    app = sandbox_app(shelf, [control.mount()])

    async def scenario() -> None:
        async with client(app) as http:
            for sub in (1, 2, 1):
                sender.schedule(lambda sub=sub: sender.send("http://receiver/hook", b"{}",
                                                            on_result=lambda d: {"subscription_id": sub}))  # fmt: skip
            answer = await http.get("/sandbox/deliveries", params={"subscription_id": 1, "min": 2, "timeout": 5})
            assert [e["subscription_id"] for e in answer.json()["deliveries"]] == [1, 1]
            bad = await http.get("/sandbox/deliveries", params={"min": "many"})
            assert bad.json() == {"error": "subscription_id and min are integers, timeout a number of seconds"}
        await sender.aclose()

    run(scenario)


class SlowReceiver(Receiver):
    """A receiver whose answers take `delay` s, counting how many requests it holds at once."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.open = 0
        self.most_open = 0

    async def hook(self, request: Request) -> Response:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await asyncio.sleep(self.delay)
            return await super().hook(request)
        finally:
            self.open -= 1


def test_by_default_deliveries_leave_one_at_a_time():
    receiver = SlowReceiver(0.02)

    async def scenario() -> None:
        sender = receiver.sender()
        for n in range(6):
            sender.schedule(lambda n=n: sender.send("http://receiver/hook", str(n).encode()))
        assert await sender.log.wait(lambda: len(sender.log.entries()) == 6, timeout=5)
        await sender.aclose()

    run(scenario)
    assert receiver.most_open == 1
    assert [body for _, body, _ in receiver.received] == [str(n).encode() for n in range(6)]


def test_with_a_concurrency_several_deliveries_are_in_flight_and_lowering_it_goes_back_to_one():
    receiver = SlowReceiver(0.05)

    async def scenario() -> None:
        sender = receiver.sender(concurrency=4)
        for n in range(12):
            sender.schedule(lambda n=n: sender.send("http://receiver/hook", str(n).encode()))
        assert await sender.log.wait(lambda: len(sender.log.entries()) == 12, timeout=5)
        assert receiver.most_open == 4  # never more than asked
        sender.concurrency = 1
        receiver.most_open = 0
        for n in range(12, 18):
            sender.schedule(lambda n=n: sender.send("http://receiver/hook", str(n).encode()))
        assert await sender.log.wait(lambda: len(sender.log.entries()) == 18, timeout=5)
        await sender.aclose()

    run(scenario)
    assert sorted(int(body) for _, body, _ in receiver.received) == list(range(18))  # each sent once
    assert receiver.most_open == 1  # idle runners over the new number stopped at once
    assert [body for _, body, _ in receiver.received[-6:]] == [str(n).encode() for n in range(12, 18)]  # in order


@pytest.mark.parametrize("bad", [0, 65, -1, 2.5, "x", True, None])
def test_a_concurrency_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="concurrency must be an integer from 1 to 64"):
        WebhookSender(concurrency=bad)


def test_the_concurrency_route_shows_and_sets_it_and_refuses_a_bad_value_with_400(clock):
    shelf = Shelf(clock)
    sender = Receiver().sender()
    control = Control(shelf)
    control.deliveries(sender)
    app = sandbox_app(shelf, [control.mount()])

    async def scenario() -> None:
        async with client(app) as http:
            assert (await http.get("/sandbox/deliveries/concurrency")).json() == {"concurrency": 1}
            assert (await http.post("/sandbox/deliveries/concurrency", json={"concurrency": 8})).json() == {
                "concurrency": 8
            }
            assert (await http.post("/sandbox/deliveries/concurrency", data={"concurrency": "3"})).json() == {
                "concurrency": 3
            }
            bad = await http.post("/sandbox/deliveries/concurrency", json={"concurrency": 0})
            assert (bad.status_code, bad.json()) == (400, {"error": "concurrency must be an integer from 1 to 64"})
            await http.post("/sandbox/reset")
            assert (await http.get("/sandbox/deliveries/concurrency")).json() == {"concurrency": 3}
        await sender.aclose()

    run(scenario)
    assert sender.concurrency == 3
