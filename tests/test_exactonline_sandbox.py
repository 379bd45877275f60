"""The Exact connector against its sandbox over real HTTP, with real Redis and a fake clock."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connectors.exactonline.auth import (
    TokenStore,
    authorize_url,
    complete_authorization,
    refresh_tokens,
    sign_state,
)
from connectors.exactonline.endpoints import Endpoint, Items
from connectors.exactonline.errors import (
    ExactAuthError,
    ExactNotFound,
    ExactRequestError,
    InvalidState,
    TokenRefreshBusy,
)
from connectors.exactonline.odata import pad_code
from connectors.exactonline.ratelimit import Limits
from connectors.exactonline.sync import SyncDeleted, SyncItems, SyncReader, SyncSalesOrderHeaders
from gateway.config import Endpoint as WebhookEndpoint
from gateway.errors import SignatureRejected
from handlers.base import Incoming
from handlers.exactonline import handle as handle_exact
from handlers.exactonline import top_level_members
from tests.conftest import serve
from tests.exactonline_support import REDIRECT, SECRET, SYSTEM, Env, ScaledClock, start

pytestmark = pytest.mark.integration


class Warehouses(Endpoint):
    path = "inventory/Warehouses"


class GLAccounts(Endpoint):
    path = "financial/GLAccounts"


@pytest.fixture
def env(rconn) -> Iterator[Env]:
    with start(rconn) as sandbox_env:
        yield sandbox_env


@pytest.fixture
def connected(env: Env) -> Env:
    env.authorise()
    return env


def run_threads(count: int, target) -> list:
    results: list = []
    errors: list = []
    barrier = threading.Barrier(count)

    def body() -> None:
        barrier.wait()
        try:
            results.append(target())
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=body) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    return results


# -- OAuth ---------------------------------------------------------------------------------------


def test_code_flow_end_to_end_with_signed_state(env):
    assert env.authorise() == SYSTEM
    client = env.client()
    assert client.division == 1234567
    assert {v["Code"] for v in client.list_vat_codes()} == {"0", "1", "2", "6", "7", "19"}
    assert env.control("state")["oauth"]["token_requests"] == 1


def test_tampered_state_stops_the_callback_before_any_token_call(env):
    state = sign_state(SECRET, SYSTEM, clock=env.clock) + "x"
    consent = env.http.get(authorize_url(env.live.url, env.app.client_id, REDIRECT, state))
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
    with pytest.raises(InvalidState):
        complete_authorization(env.http, env.app, env.conn, secret=SECRET, state=state, code=code)
    assert env.sandbox.token_requests == 0
    assert TokenStore(env.conn, SYSTEM).load() is None


def test_authorisation_code_is_single_use_and_redirect_uri_registered(env):
    state = sign_state(SECRET, SYSTEM, clock=env.clock)
    consent = env.http.get(authorize_url(env.live.url, env.app.client_id, REDIRECT, state))
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
    complete_authorization(env.http, env.app, env.conn, secret=SECRET, state=state, code=code, clock=env.clock)
    with pytest.raises(ExactAuthError, match="invalid_grant"):
        complete_authorization(env.http, env.app, env.conn, secret=SECRET, state=state, code=code, clock=env.clock)
    elsewhere = env.http.get(authorize_url(env.live.url, env.app.client_id, "https://evil.example/cb", state))
    assert elsewhere.status_code == 400


def test_consent_page_when_auto_approve_is_off(rconn):
    with start(rconn, auto_approve=False) as env:
        url = authorize_url(env.live.url, env.app.client_id, REDIRECT, "s1")
        page = env.http.get(url)
        assert page.status_code == 200 and 'value="approve"' in page.text
        form = {**dict(parse_qs(urlsplit(url).query, keep_blank_values=True)), "decision": "approve"}
        approved = env.http.post(
            f"{env.live.url}/api/oauth2/auth", data={k: v if isinstance(v, str) else v[0] for k, v in form.items()}
        )
        assert approved.status_code == 302
        assert parse_qs(urlsplit(approved.headers["location"]).query)["state"] == ["s1"]


def test_expired_tokens_in_eight_threads_cause_exactly_one_refresh(connected):
    env = connected
    env.control("seed/items", {"skus": ["A"]})
    env.control("expire-tokens")  # every access token answers 401 from now on
    found = run_threads(8, lambda: env.client(Limits(max_wait=3600)).find_item_ids_by_codes(["A"]))
    assert len(found) == 8 and all(f.keys() == {"A"} for f in found)
    assert env.sandbox.refreshes == 1


def test_tokens_near_expiry_in_eight_threads_are_refreshed_once(connected):
    env = connected
    clients = [env.client() for _ in range(8)]  # division resolved now; no refresh yet
    env.clock.advance(580)  # 20 s left: below the 30 s margin, past Exact's 9 min 30 s rule
    it = iter(clients)
    lock = threading.Lock()

    def call() -> int:
        with lock:
            client = next(it)
        return len(client.list_vat_codes())

    assert run_threads(8, call) == [6] * 8
    assert env.sandbox.refreshes == 1


def test_rotation_kills_the_old_refresh_token(connected):
    env = connected
    store = TokenStore(env.conn, SYSTEM)
    old = store.load()
    env.clock.advance(590)
    env.client().list_vat_codes()
    assert store.load().refresh_token != old.refresh_token
    with pytest.raises(ExactAuthError) as caught:
        refresh_tokens(env.http, env.app, old.refresh_token, clock=env.clock)
    assert old.refresh_token not in str(caught.value)
    assert env.control("state")["oauth"]["refused"] == {"invalid_grant": 1}


def test_refreshing_too_early_is_refused_by_exact(connected):
    with pytest.raises(TokenRefreshBusy, match="not expired"):
        refresh_tokens(connected.http, connected.app, TokenStore(connected.conn, SYSTEM).load().refresh_token)
    assert connected.control("state")["oauth"]["refused"] == {"not_expired": 1}


def test_expired_token_without_refresh_gets_401(connected):
    response = connected.http.get(
        f"{connected.live.url}/api/v1/1234567/vat/VATCodes", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"]["value"].startswith("Unauthorized")


# -- rate limits ---------------------------------------------------------------------------------


def windows(env: Env) -> list[dict]:
    return [w for w in env.control("calls")["windows"] if w["received"]]


def test_workers_sharing_the_budget_never_exceed_the_limit(rconn):
    with start(rconn, ScaledClock(speed=120), per_minute=5, token_lifetime=86_400) as env:
        env.authorise()
        env.client()  # the first worker asks current/Me; the division is cached for the others

        def worker() -> None:  # one client per worker process, as in production
            client = env.client(Limits(per_minute=5, max_wait=3600))
            for _ in range(2):
                client.list_vat_codes()

        run_threads(8, worker)
        seen = windows(env)
        assert sum(w["accepted"] for w in seen) == 1 + 16  # one current/Me, then 16 lists
        assert max(w["received"] for w in seen) <= 5
        assert sum(w["throttled"] for w in seen) == 0


def test_a_429_storm_is_absorbed_without_loss(rconn):
    # 30x: a simulated minute is 2 s, so the first burst (8 threads released at once) lands in one window even
    # on a loaded machine; at 120x (0.5 s) it could straddle two windows and meet no 429 at all
    with start(rconn, ScaledClock(speed=30), token_lifetime=86_400) as env:
        env.authorise()
        client = env.client(Limits(max_wait=3600))  # learns Exact's 60/min from the current/Me answer
        env.control("ratelimit", {"per_minute": 5})  # ... then Exact allows only 5: a storm of 429s
        run_threads(8, lambda: [client.list_vat_codes() for _ in range(2)])
        seen = windows(env)
        assert sum(w["accepted"] for w in seen) == 1 + 16
        assert max(w["accepted"] for w in seen) <= 5
        throttled = sum(w["throttled"] for w in seen)
        assert 0 < throttled <= 8  # only the first burst, before the headers taught the limit


def test_rate_limit_headers_and_the_minutely_only_429(connected):
    env = connected
    env.control("ratelimit", {"per_minute": 2})
    url = f"{env.live.url}/api/v1/1234567/vat/VATCodes"
    token = TokenStore(env.conn, SYSTEM).load().access_token
    answers = [env.http.get(url, headers={"Authorization": f"Bearer {token}"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    ok, limited = answers[0].headers, answers[2].headers
    assert ok["X-RateLimit-Minutely-Remaining"] == "1" and ok["X-RateLimit-Remaining"] == "4999"
    assert int(ok["X-RateLimit-Minutely-Reset"]) % 60_000 == 0 and int(ok["X-RateLimit-Reset"]) > 1e12
    assert limited["X-RateLimit-Minutely-Remaining"] == "0"
    assert "X-RateLimit-Remaining" not in limited and "X-RateLimit-Limit" not in limited
    env.control("ratelimit", {"enabled": False})
    assert (
        "X-RateLimit-Minutely-Remaining" not in env.http.get(url, headers={"Authorization": f"Bearer {token}"}).headers
    )


# -- API behaviour ---------------------------------------------------------------------------------


def test_order_flow_calls_against_the_sandbox(connected):
    env = connected
    client = env.client()
    env.control("seed/items", {"skus": ["KOP-1", "KOP-2"]})
    account = client.create_account({"Name": "Jörg B.V.", "Email": "jorg@example.com", "Status": "C"})
    assert account["Code"] == pad_code("1")
    assert client.find_account_by_email("JORG@example.com")["ID"] == account["ID"]
    assert client.first(Items, filter="Code eq 'KOP-1'") is not None
    client.update_account(account["ID"], {"City": "Utrecht"})
    contact = client.create_contact({"Account": account["ID"], "FirstName": "Jörg", "LastName": "B"})
    assert contact["Account"] == account["ID"]
    items = client.find_item_ids_by_codes(["KOP-1", "kop-2", "MISSING"])
    assert set(items) == {"KOP-1", "kop-2"}
    lines = [{"Item": items["KOP-1"], "Quantity": 2, "UnitPrice": Decimal("12.36"), "VATCode": "2"}]
    order = client.create_sales_order({"OrderedBy": account["ID"], "YourRef": "WC-1001", "SalesOrderLines": lines})
    assert order["OrderNumber"] == 1 and order["AmountFC"] == 24.72
    assert client.find_sales_order_by_your_ref("WC-1001")["OrderID"] == order["OrderID"]
    assert client.find_sales_order_by_your_ref("WC-9999") is None
    invoice = client.create_sales_invoice(
        {"OrderedBy": account["ID"], "Journal": "70", "YourRef": "WC-1002", "SalesInvoiceLines": lines}
    )
    assert invoice["Type"] == 8020
    direct = client.create_sales_invoice(
        {
            "OrderedBy": account["ID"],
            "Journal": "70",
            "SalesInvoiceLines": lines,
            "Warehouse": "5b1f1f80-6d5e-4c39-9a8e-000000000001",
        },
        direct=True,
    )
    assert direct["Type"] == 8023
    entry = client.create_sales_entry(
        {
            "Customer": account["ID"],
            "Journal": "70",
            "YourRef": "WC-1003",
            "SalesEntryLines": [{"GLAccount": client.first(GLAccounts, filter="Code eq '8000'")["ID"],
                                 "AmountFC": Decimal("24.72")}],
        }
    )
    assert client.find_sales_entry_by_your_ref("WC-1003")["EntryID"] == entry["EntryID"]
    assert client.calls_by_endpoint["GET logistics/Items"] == 2  # one `or` request per lookup


def test_exact_shaped_errors_from_the_sandbox(connected):
    env = connected
    client = env.client()
    account = client.create_account({"Name": "A"})
    with pytest.raises(ExactRequestError, match="Mandatory field missing: OrderedBy"):
        client.request("POST", client.url("salesorder/SalesOrders"), json={"SalesOrderLines": [{"Item": "x"}]})
    with pytest.raises(ExactRequestError, match="Invalid reference: Item"):
        client.create_sales_order(
            {"OrderedBy": account["ID"], "SalesOrderLines": [{"Item": "5f1c7a43-1d0a-4d3c-9d51-0a2b3c4d5e6f"}]}
        )
    with pytest.raises(ExactNotFound):
        client.update_account("5f1c7a43-1d0a-4d3c-9d51-0a2b3c4d5e6f", {"Name": "B"})
    with pytest.raises(ExactRequestError, match="substringof"):
        client.query(Items, filter="substringof('KOP', Code) eq true")
    with pytest.raises(ExactRequestError, match="property 'Nope'"):
        client.query(Items, select=["ID", "Nope"])
    item = env.control("seed/items", {"skus": ["W-1"]})["items"]["W-1"]
    main = client.first(Warehouses, filter="Main eq 1")["ID"]
    with pytest.raises(ExactRequestError, match="Warehouse can only be set for a direct sales invoice"):
        client.create_sales_invoice(
            {"OrderedBy": account["ID"], "Journal": "70", "Warehouse": main, "SalesInvoiceLines": [{"Item": item}]}
        )
    with pytest.raises(ExactRequestError, match=r"Invalid reference: Warehouse \(Warehouse not found\)"):
        client.create_sales_invoice(
            {"OrderedBy": account["ID"], "Journal": "70", "Warehouse": item, "SalesInvoiceLines": [{"Item": item}]},
            direct=True,
        )
    with pytest.raises(ExactRequestError, match=r"Invalid reference: GLAccount \(GLAccount not found\)"):
        client.create_sales_entry(
            {"Customer": account["ID"], "Journal": "70", "SalesEntryLines": [{"GLAccount": item, "AmountFC": 1}]}
        )


def test_standard_lists_page_by_60(connected):
    env = connected
    env.control("seed/items", {"skus": [f"P-{i:03}" for i in range(130)]})
    client = env.client()
    before = client.calls
    assert len(client.query(Items)) == 130
    assert client.calls - before == 3
    assert len(client.query(Items, top=70)) == 70


def test_injected_5xx_are_retried(connected):
    client = connected.client()
    connected.control("fail", {"status": 503, "times": 2})
    before = client.calls
    assert len(client.list_vat_codes()) == 6
    assert client.calls - before == 3


def test_injected_429_with_retry_after_is_waited_out(connected):
    client = connected.client()
    connected.control("fail", {"status": 429, "times": 1, "retry_after": 2})
    before, slept = client.calls, len(connected.clock.slept)
    assert len(client.list_vat_codes()) == 6
    assert client.calls - before == 2
    waits = connected.clock.slept[slept:]
    assert len(waits) == 1 and 2 <= waits[0] < 3  # Retry-After, plus the limiter's margin


def test_sync_api_returns_changes_since_a_cursor(rconn):
    with start(rconn, sync_page_size=4, timestamps_as_strings=True) as env:
        env.authorise()
        client = env.client()
        ids = env.control("seed/items", {"skus": [f"S-{i}" for i in range(10)]})["items"]
        pages = list(SyncReader(client, SyncItems).read_since(0))
        assert [len(p) for p, _ in pages] == [4, 4, 2]
        cursor = pages[-1][1]
        assert cursor == max(r["Timestamp"] for p, _ in pages for r in p) and isinstance(cursor, int)
        client.request("PUT", client.url(f"logistics/Items(guid'{ids['S-3']}')"), json={"Description": "new"})
        client.delete(Items, ids["S-4"])
        changed = [r for p, _ in SyncReader(client, SyncItems).read_since(cursor) for r in p]
        assert [r["Code"] for r in changed] == ["S-3"]
        deleted = [r for p, _ in SyncReader(client, SyncDeleted).read_since(cursor) for r in p]
        assert {(r["EntityType"], r["EntityKey"]) for r in deleted} >= {(9, ids["S-4"])}
        account = client.create_account({"Name": "X"})
        client.create_sales_order(
            {"OrderedBy": account["ID"], "YourRef": "WC-7", "SalesOrderLines": [{"Item": ids["S-1"], "Quantity": 1}]}
        )
        headers = [r for p, _ in SyncReader(client, SyncSalesOrderHeaders).read_since(cursor) for r in p]
        assert [h["YourRef"] for h in headers] == ["WC-7"] and headers[0]["ID"] == headers[0]["OrderID"]


def test_control_routes(connected):
    env = connected
    env.control("seed/items", {"skus": ["Z"]})
    state = env.control("state")
    assert [i["Code"] for i in state["entities"]["1234567"]["logistics/Items"]] == ["Z"]
    assert "client_secret" not in state["config"]
    [account] = env.control("seed", {"entity": "crm/Accounts", "records": [{"Name": "Seeded"}]})["ids"]
    assert env.control("update", {"entity": "crm/Accounts", "id": account, "fields": {"Name": "Renamed"}})
    assert [a["Name"] for a in env.control("state")["entities"]["1234567"]["crm/Accounts"]] == ["Renamed"]
    assert env.control("ratelimit", {"per_minute": 9}) == {"per_minute": 9, "per_day": 5000, "enabled": True}
    env.control("reset")
    assert env.control("state")["entities"]["1234567"]["logistics/Items"] == []
    assert env.control("calls")["total"] == 0
    assert env.client().list_vat_codes()  # tokens survive a data reset


def test_warehouses_and_gl_accounts_as_exact_has_them(connected):
    env = connected
    client = env.client()
    [main] = client.query(Warehouses)
    assert (main["Code"], main["Main"], main["Description"]) == ("1", 1, "Hoofdmagazijn")
    assert client.first(Warehouses, filter="Code eq '1'", select=("ID", "Code", "Main")) == {
        "__metadata": main["__metadata"], "ID": main["ID"], "Code": "1", "Main": 1,
    }  # fmt: skip
    revenue = client.query(GLAccounts, filter="Type eq 110", select=("Code", "Type", "BalanceType", "BalanceSide"))
    assert sorted((a["Code"], a["Type"], a["BalanceType"], a["BalanceSide"]) for a in revenue) == [
        (code, 110, "W", "C") for code in ("8000", "8010", "8020")
    ]
    assert len(client.query(GLAccounts, top=2)) == 2
    assert client.first(GLAccounts, filter="Code eq '9999'") is None
    with pytest.raises(ExactRequestError, match="property 'Nope'"):
        client.query(GLAccounts, filter="Nope eq 1")

    # seeded through the control route; a new main warehouse demotes the old one (exactly one is main)
    shop = {"Code": "2", "Description": "Winkel", "Main": True}
    [second] = env.control("seed", {"entity": "inventory/Warehouses", "records": [shop]})["ids"]
    mains = client.query(Warehouses, filter="Main eq 1", select=("ID", "Code"))
    assert [(w["ID"], w["Code"]) for w in mains] == [(second, "2")]
    germany = {"Code": "8100", "Description": "Omzet DE", "Type": 110}
    [gl] = env.control("seed", {"entity": "financial/GLAccounts", "records": [germany]})["ids"]
    assert client.first(GLAccounts, filter="Code eq '8100'")["ID"] == gl
    for entity, code in (("inventory/Warehouses", "2"), ("financial/GLAccounts", "8000")):
        answer = env.http.post(f"{env.live.url}/sandbox/seed", json={"entity": entity, "records": [{"Code": code}]})
        assert answer.status_code == 400 and "code already exists" in answer.text
    answer = env.http.post(f"{env.live.url}/sandbox/update",
                           json={"entity": "inventory/Warehouses", "id": second, "fields": {"Main": 0}})  # fmt: skip
    assert answer.status_code == 400 and "one main warehouse" in answer.text
    with pytest.raises(ExactRequestError, match="main warehouse cannot be deleted"):
        client.delete(Warehouses, second)
    client.delete(Warehouses, main["ID"])  # no longer the main one
    env.control("reset")
    assert [w["Code"] for w in env.control("state")["entities"]["1234567"]["inventory/Warehouses"]] == ["1"]


# -- webhooks ----------------------------------------------------------------------------------------------

DIVISION = 1234567
HOOK_SECRET = "whs-exact"


@dataclass
class Receiver:
    """A callback URL: what it was sent, and the statuses it answers with (200 once they run out)."""

    url: str
    answers: list[int] = field(default_factory=list)
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    @property
    def bodies(self) -> list[bytes]:
        return [body for body, _ in self.received]

    def notifications(self) -> list[dict]:
        return [json.loads(body)["Content"] for body in self.bodies if body]


@contextmanager
def receiver(answers: list[int] | None = None) -> Iterator[Receiver]:
    lock = threading.Lock()
    box = Receiver("", list(answers or []))

    async def hook(request: Request) -> Response:
        body = await request.body()
        with lock:
            box.received.append((body, {k.lower(): v for k, v in request.headers.items()}))
            status = box.answers.pop(0) if box.answers else 200
        if status in (204, 304):  # no body: HTTP forbids one, and a client reusing the connection would choke
            return Response(status_code=status)
        return PlainTextResponse("ok", status_code=status)

    live = serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), name="callback")
    box.url = f"{live.url}/hook"
    try:
        yield box
    finally:
        live.stop()


def api(env: Env, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs) -> httpx.Response:
    """A call to the sandbox's REST API with Koppel's stored token (`connected`)."""
    url = f"{env.live.url}/api/v1/{DIVISION}/{path}"
    return env.http.request(method, url, headers={**api_headers(env), **(headers or {})}, **kwargs)


def subscribe(env: Env, url: str, topic: str, **more) -> httpx.Response:
    return api(env, "POST", "webhooks/WebhookSubscriptions", json={"CallbackURL": url, "Topic": topic, **more})


def deliveries(env: Env, count: int, **match) -> list[dict]:
    params = {"min": count, "timeout": 10, **match}
    found = env.http.get(f"{env.live.url}/sandbox/deliveries", params=params).raise_for_status().json()
    assert len(found["deliveries"]) >= count, found
    return found["deliveries"]


def hook_state(env: Env) -> dict:
    return env.http.get(f"{env.live.url}/sandbox/webhooks").raise_for_status().json()


def hook_endpoint(secret: str = HOOK_SECRET) -> WebhookEndpoint:
    return WebhookEndpoint.model_validate({"id": "exact-hooks", "kind": "exactonline", "secret": "env:HOOK"},
                                   context={"environ": {"HOOK": secret}})  # fmt: skip


@pytest.fixture
def hooked(connected: Env) -> Env:
    connected.control("webhooks", {"secret": HOOK_SECRET})
    return connected


def test_a_subscription_is_validated_by_an_empty_post_then_listed_and_deleted(hooked):
    env = hooked
    with receiver() as callback:
        created = subscribe(env, callback.url, "Accounts", Description="Koppel")
        assert created.status_code == 201
        [(validation, headers)] = callback.received  # the validation: an empty POST
        assert validation == b"" and headers["user-agent"] == "Exact Online sandbox"
        sub = created.json()["d"]
        assert sub["CallbackURL"] == callback.url and sub["Topic"] == "Accounts" and sub["Division"] == DIVISION
        assert sub["ClientID"] == "koppel-sandbox" and sub["Description"] == "Koppel" and sub["IsInstant"] is False
        assert sub["Created"].startswith("/Date(") and sub["Creator"] == sub["UserID"]
        assert sub["__metadata"]["uri"].endswith(f"/api/v1/{DIVISION}/webhooks/WebhookSubscriptions(guid'{sub['ID']}')")
        assert subscribe(env, callback.url, "Items").status_code == 201

        listed = api(env, "GET", "webhooks/WebhookSubscriptions").json()["d"]["results"]
        assert sorted(s["Topic"] for s in listed) == ["Accounts", "Items"]
        only = api(env, "GET", "webhooks/WebhookSubscriptions",
                   params={"$filter": "Topic eq 'Items'", "$select": "ID,Topic"}).json()["d"]["results"]  # fmt: skip
        assert [set(s) - {"__metadata"} for s in only] == [{"ID", "Topic"}] and only[0]["Topic"] == "Items"
        one = api(env, "GET", f"webhooks/WebhookSubscriptions(guid'{sub['ID']}')").json()["d"]
        assert one["Topic"] == "Accounts"
        assert api(env, "GET", "webhooks/WebhookSubscriptions", headers={"Authorization": ""}).status_code == 401

        deleted = api(env, "DELETE", f"webhooks/WebhookSubscriptions(guid'{sub['ID']}')")
        assert deleted.status_code == 204 and deleted.content == b""
        assert api(env, "GET", f"webhooks/WebhookSubscriptions(guid'{sub['ID']}')").status_code == 404
        assert [s["Topic"] for s in api(env, "GET", "webhooks/WebhookSubscriptions").json()["d"]["results"]] == [
            "Items"
        ]
        env.control("seed", {"entity": "crm/Accounts", "records": [{"Name": "Nobody listens"}]})
        env.control("seed/items", {"skus": ["HEARD"]})
        [told] = [d for d in deliveries(env, 3) if not d["validation"]]
        assert told["topic"] == "Items" and told["action"] == "Create"
    assert [n["Topic"] for n in callback.notifications()] == ["Items"]  # nothing for the deleted subscription


@pytest.mark.parametrize("answer", [202, 204, 301, 404, 500])
def test_a_subscription_is_refused_when_the_callback_does_not_answer_200_or_201(hooked, answer):
    env = hooked
    with receiver([answer]) as callback:
        refused = subscribe(env, callback.url, "SalesOrders")
        assert refused.status_code == 400
        assert f"answered {answer}" in refused.json()["error"]["message"]["value"]
        assert callback.bodies == [b""]
        assert api(env, "GET", "webhooks/WebhookSubscriptions").json()["d"]["results"] == []
        assert subscribe(env, callback.url, "SalesOrders").status_code == 201  # answered 200 this time
    with receiver([201]) as callback:
        assert subscribe(env, callback.url, "Accounts").status_code == 201


def test_a_subscription_is_refused_when_the_callback_cannot_be_reached(hooked):
    with receiver() as callback:
        gone = callback.url
    refused = subscribe(hooked, gone, "Items")
    assert refused.status_code == 400 and "ConnectError" in refused.json()["error"]["message"]["value"]
    [validation] = deliveries(hooked, 1)
    assert validation["validation"] and validation["status_code"] is None and not validation["success"]


def test_bad_subscriptions_are_refused_in_exacts_shape(hooked):
    env = hooked
    with receiver() as callback:
        cases = [
            ({"Topic": "Items"}, 400, "Mandatory field missing: CallbackURL"),
            ({"CallbackURL": callback.url}, 400, "Mandatory field missing: Topic"),
            ({"CallbackURL": "ftp://example.com/x", "Topic": "Items"}, 400, "Invalid CallbackURL"),
            ({"CallbackURL": callback.url, "Topic": "StockPositions"}, 400, "not supported by the sandbox"),
            ({"CallbackURL": callback.url, "Topic": "Items", "Colour": 1}, 400, "Property 'Colour' does not exist"),
            ({"CallbackURL": callback.url, "Topic": "Items", "IsInstant": True}, 400, "GoodsDeliveries"),
        ]
        for body, status, message in cases:
            answer = api(env, "POST", "webhooks/WebhookSubscriptions", json=body)
            assert answer.status_code == status and message in answer.json()["error"]["message"]["value"], body
        assert callback.received == []  # nothing validated before the body was
        assert subscribe(env, callback.url, "Items").status_code == 201
        again = subscribe(env, callback.url, "Items")
        assert again.status_code == 500 and again.json()["error"]["message"]["value"] == "Data already exists"
        assert len(callback.received) == 1
        wrong = api(env, "PUT", f"webhooks/WebhookSubscriptions(guid'{uuid.uuid4()}')", json={})
        assert wrong.status_code == 405


def test_every_change_of_a_subscribed_topic_is_told_signed_with_the_apps_secret(hooked):
    env = hooked
    with receiver() as callback:
        for topic in ("Accounts", "Items", "SalesOrders"):
            assert subscribe(env, callback.url, topic).status_code == 201
        items = env.control("seed/items", {"skus": ["W-1"]})["items"]  # Items Create (a control route)
        account = api(env, "POST", "crm/Accounts", json={"Name": "Webhook BV"}).json()["d"]["ID"]  # the API
        assert api(env, "PUT", f"crm/Accounts(guid'{account}')", json={"City": "Utrecht"}).status_code == 204
        env.control("update", {"entity": "crm/Accounts", "id": account, "fields": {"Email": "w@example.com"}})
        order = {"OrderedBy": account, "SalesOrderLines": [{"Item": items["W-1"], "Quantity": 2}]}
        order_id = api(env, "POST", "salesorder/SalesOrders", json=order).json()["d"]["OrderID"]
        assert api(env, "DELETE", f"salesorder/SalesOrders(guid'{order_id}')").status_code == 204
        [contact] = env.control("seed", {"entity": "crm/Contacts", "records": [{"Account": account}]})["ids"]
        env.control("update", {"entity": "crm/Contacts", "id": contact, "fields": {"FirstName": "Not subscribed"}})
        sent = [d for d in deliveries(env, 9) if not d["validation"]]
        assert [(d["topic"], d["action"], d["key"]) for d in sent] == [
            ("Items", "Create", items["W-1"]),
            ("Accounts", "Create", account),
            ("Accounts", "Update", account),
            ("Accounts", "Update", account),
            ("SalesOrders", "Create", order_id),
            ("SalesOrders", "Delete", order_id),
        ]
        assert all(d["success"] and d["status_code"] == 200 and d["attempt"] == 0 for d in sent)

    notifications = [(body, headers) for body, headers in callback.received if body]
    assert len(notifications) == 6
    body, headers = notifications[1]
    assert headers["content-type"] == "application/json"
    members = top_level_members(body.decode())
    assert list(members) == ["Content", "HashCode"]
    content, content_text = members["Content"]
    assert list(content) == ["Topic", "ClientId", "Division", "Action", "Key", "ExactOnlineEndpoint", "EventCreatedOn"]
    assert content_text == json.dumps(content, separators=(",", ":"))  # compact, as Exact sends it
    assert content["Division"] == DIVISION and content["ClientId"] == "koppel-sandbox"
    assert content["ExactOnlineEndpoint"] == f"{env.live.url}/api/v1/{DIVISION}/crm/Accounts(guid'{account}')"
    assert len(content["EventCreatedOn"]) == len("2020-01-06T16:26:08.587")
    record = env.http.get(content["ExactOnlineEndpoint"], headers=api_headers(env)).json()["d"]
    assert record["Name"] == "Webhook BV"  # the thin notification names where the record is read

    endpoint = hook_endpoint()
    events = [event for body, _ in notifications for event in handle_exact(Incoming("POST", {}, {}, body),
                                                                            endpoint).events]  # fmt: skip
    assert [e.topic for e in events] == ["Items.Create", "Accounts.Create", "Accounts.Update", "Accounts.Update",
                                         "SalesOrders.Create", "SalesOrders.Delete"]  # fmt: skip
    assert events[-1].resource_id == order_id and events[-1].payload["Division"] == DIVISION
    assert handle_exact(Incoming("POST", {}, {}, b""), endpoint).status == 200  # the validation, answered
    with pytest.raises(SignatureRejected):
        handle_exact(Incoming("POST", {}, {}, body), hook_endpoint("another-secret"))
    forged = body.replace(b'"Action":"Create"', b'"Action":"Delete"')
    assert forged != body
    with pytest.raises(SignatureRejected):
        handle_exact(Incoming("POST", {}, {}, forged), endpoint)


def api_headers(env: Env) -> dict[str, str]:
    tokens = TokenStore(env.conn, SYSTEM).load()
    assert tokens is not None
    return {"Authorization": f"Bearer {tokens.access_token}"}


def test_only_the_subscribed_division_is_told(rconn):
    other = 7654321
    with start(rconn, divisions=(DIVISION, other)) as env, receiver() as callback:
        env.authorise()
        env.control("webhooks", {"secret": HOOK_SECRET})
        assert subscribe(env, callback.url, "Accounts").status_code == 201
        env.control("seed", {"entity": "crm/Accounts", "records": [{"Name": "Elsewhere"}], "division": other})
        [mine] = env.control("seed", {"entity": "crm/Accounts", "records": [{"Name": "Here"}]})["ids"]
        [told] = [d for d in deliveries(env, 2) if not d["validation"]]
        assert told["key"] == mine and told["division"] == DIVISION


def test_a_new_record_can_be_told_as_an_update(rconn):
    with start(rconn, created_action="Update") as env, receiver() as callback:
        env.authorise()
        assert subscribe(env, callback.url, "Items").status_code == 201
        env.control("seed/items", {"skus": ["U-1"]})
        deliveries(env, 2)
        assert [n["Action"] for n in callback.notifications()] == ["Update"]


def test_a_failed_notification_is_retried_with_the_same_bytes(rconn):
    with start(rconn, retry_minute=0.01) as env, receiver([200, 500, 503]) as callback:  # validation, 2 failures
        env.authorise()
        assert subscribe(env, callback.url, "Accounts").status_code == 201
        env.control("seed", {"entity": "crm/Accounts", "records": [{"Name": "Retried"}]})
        sent = [d for d in deliveries(env, 4) if not d["validation"]]
        assert [(d["attempt"], d["status_code"], d["success"]) for d in sent] == [
            (0, 500, False), (1, 503, False), (2, 200, True)
        ]  # fmt: skip
        assert [d["retry_in"] for d in sent] == [pytest.approx(0.02), pytest.approx(0.04), None]  # 2^n minutes
        first, *again = [body for body in callback.bodies if body]
        assert again == [first, first]
        state = hook_state(env)
        assert state["subscriptions"][0]["failures"] == 0 and state["waiting_retries"] == []
        [event] = handle_exact(Incoming("POST", {}, {}, first), hook_endpoint("sandbox-webhook-secret")).events
        assert event.topic == "Accounts.Create"


def test_retries_stop_after_ten(connected):
    env = connected
    with receiver([200] + [500] * 20) as callback:
        assert subscribe(env, callback.url, "Items").status_code == 201
        env.control("seed/items", {"skus": ["R-1"]})
        deliveries(env, 2)
        for attempt in range(1, 11):
            state = hook_state(env)
            assert [w["attempt"] for w in state["waiting_retries"]] == [attempt]  # 2^attempt minutes away
            assert env.control("webhooks/retry") == {"retried": 1}
            deliveries(env, 2 + attempt)
        sent = [d for d in deliveries(env, 12) if not d["validation"]]
        assert [d["attempt"] for d in sent] == list(range(11))
        assert [d["retry_in"] for d in sent] == [2**n * 60.0 for n in range(1, 11)] + [None]
        state = hook_state(env)
        assert state["waiting_retries"] == [] and state["subscriptions"][0]["failures"] == 11
        assert env.control("webhooks/retry") == {"retried": 0}
        assert len(callback.bodies) == 12


def test_a_reset_forgets_subscriptions_and_deliveries(hooked):
    env = hooked
    with receiver() as callback:
        assert subscribe(env, callback.url, "Items").status_code == 201
        env.control("reset")
        assert hook_state(env)["subscriptions"] == []
        env.control("seed/items", {"skus": ["AFTER"]})
        found = env.http.get(f"{env.live.url}/sandbox/deliveries").json()
        assert found == {"deliveries": [], "queued": 0}
        assert "webhook_secret" not in env.control("state")["config"]
