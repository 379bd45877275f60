"""The web console (/console/): login sessions, CSRF, security headers, integrations and their switch.

Over real HTTP (the gateway served by uvicorn) against a real Redis; pages are read through the
stable markup docs/console.md lists (ids, names and data- attributes).
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from rq import Worker

from connectors.tokens import Tokens, TokenStore
from gateway import vault
from gateway.activity import Activity, ActivityLog
from gateway.app import create_app
from gateway.config import Config, parse_config
from gateway.console.session import COOKIE, Sessions
from gateway.ingest import make_queue
from tests.conftest import SECRETS, serve
from tests.console_support import EMAIL, failed_jobs
from workers.switches import switch_off, switched_off

pytestmark = pytest.mark.integration

TOKEN = SECRETS["ADMIN_TOKEN"]
ENV = SECRETS | {"EXACT_CLIENT_SECRET": "exact-secret"}


def console_config(*, mappings: dict | None = None, **gateway: object) -> Config:
    """A WooCommerce shop (endpoint `shop`) feeding Exact (`exact`), and the admin token (unless overridden)."""
    return parse_config(
        {
            "gateway": {"admin_token": "env:ADMIN_TOKEN", **gateway},
            "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
            "systems": [{"id": "exact", "kind": "exactonline", "settings": {"client_id": "koppel-app"},
                         "credentials": {"client_secret": "env:EXACT_CLIENT_SECRET"}}],
            "integrations": [{"id": "shop-to-exact", "source": "shop", "target": "exact", "flows": ["orders"],
                              "mappings": mappings or {}}],
        },
        environ=ENV,
    )  # fmt: skip


@pytest.fixture
def live(redis_url):
    server = serve(create_app(console_config(), redis_url))
    yield server
    server.stop()


@pytest.fixture
def anon(live):
    with httpx.Client(base_url=live.url, timeout=10) as client:
        yield client


@pytest.fixture
def console(live):
    """A client logged in to the console."""
    with httpx.Client(base_url=live.url, timeout=10) as client:
        response = client.post("/console/login", data={"token": TOKEN})
        assert response.status_code == 303, response.text
        yield client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def row_of(page: str, integration: str = "shop-to-exact") -> str:
    found = re.search(rf'<tr data-integration="{integration}"[^>]*>(.*?)</tr>', page, re.S)
    assert found, f"no row for {integration}"
    return found.group(0)


# -- login --------------------------------------------------------------------------------------------


def test_pages_send_to_the_login_form_without_a_session(anon):
    response = anon.get("/console/")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"
    login = anon.get("/console/login")
    assert login.status_code == 200
    assert '<form id="login"' in login.text and 'name="token"' in login.text


def test_login_sets_a_strict_httponly_session_cookie_and_logout_ends_it(anon):
    response = anon.post("/console/login", data={"token": TOKEN})
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain http here; Secure over https
    page = anon.get("/console/")
    assert page.status_code == 200
    assert '<table id="integrations">' in page.text
    kept = anon.cookies[COOKIE]
    out = anon.post("/console/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert anon.get("/console/").status_code == 303
    anon.cookies.set(COOKIE, kept)  # a copy of the cookie is no good after the logout either
    assert anon.get("/console/").status_code == 303


def test_a_wrong_token_is_refused_with_a_clear_page(anon):
    response = anon.post("/console/login", data={"token": "not-the-token"})
    assert response.status_code == 401
    assert "not the gateway&#39;s admin token" in response.text
    assert COOKIE not in response.headers.get("set-cookie", "")


def test_without_an_admin_token_the_console_says_how_to_set_one(redis_url):
    live = serve(create_app(console_config(admin_token=None), redis_url))
    try:
        with httpx.Client(base_url=live.url, timeout=10) as client:
            for response in (client.get("/console/"), client.get("/console/login"),
                             client.post("/console/login", data={"token": "x"})):  # fmt: skip
                assert response.status_code == 403
                assert "admin_token" in response.text and 'id="no-token"' in response.text
    finally:
        live.stop()


@pytest.mark.parametrize("cookie", ["tampered", "expired", "other-key", "garbage"])
def test_a_tampered_or_expired_session_is_not_accepted(anon, cookie):
    sessions = Sessions(console_config().gateway.admin_token)
    value = sessions.issue()
    if cookie == "tampered":
        value = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    elif cookie == "expired":
        signer = sessions._sessions
        value = signer.dumps({"sid": "old"})
        real_time = time.time
        try:
            time.time = lambda: real_time() - 9 * 3600  # type: ignore[assignment]
            value = signer.dumps({"sid": "old"})
        finally:
            time.time = real_time  # type: ignore[assignment]
    elif cookie == "other-key":
        value = URLSafeTimedSerializer("guessed", salt="koppel-console-session").dumps({"sid": "x"})
    else:
        value = "not.a.cookie"
    anon.cookies.set(COOKIE, value)
    assert anon.get("/console/").status_code == 303
    refused = anon.post("/console/integrations/shop-to-exact/switch", data={"switch": "off", "csrf": "x"})
    assert refused.status_code == 401


def test_console_pages_carry_the_security_headers(console, anon):
    for response in (console.get("/console/"), anon.get("/console/login"), console.get("/console/nowhere")):
        headers = response.headers
        assert headers["content-security-policy"].startswith("default-src 'self'")
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    assert console.get("/console/nowhere").status_code == 404


# -- CSRF and state changes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("csrf", [None, "", "wrong", "other-session"])
def test_a_post_without_its_sessions_csrf_token_is_refused(console, rconn, csrf):
    data = {"switch": "off"}
    if csrf == "other-session":
        sessions = Sessions(console_config().gateway.admin_token)
        data["csrf"] = sessions.csrf_token("another-session-id")
    elif csrf is not None:
        data["csrf"] = csrf
    response = console.post("/console/integrations/shop-to-exact/switch", data=data)
    assert response.status_code == 403
    assert "CSRF token is missing or wrong" in response.text
    assert switched_off(rconn, "shop-to-exact") is None


def test_the_switch_turns_an_integration_off_and_on(console, rconn):
    page = console.get("/console/")
    assert 'data-state="on"' in row_of(page.text)
    assert 'name="switch" value="off"' in row_of(page.text)
    off = console.post("/console/integrations/shop-to-exact/switch", data={"switch": "off", "csrf": csrf_of(page.text)})
    assert off.status_code == 303
    assert switched_off(rconn, "shop-to-exact") == "switched off by an operator in the web console"
    page = console.get("/console/")
    row = row_of(page.text)
    assert 'data-state="off"' in row and 'name="switch" value="on"' in row
    on = console.post("/console/integrations/shop-to-exact/switch", data={"switch": "on", "csrf": csrf_of(page.text)})
    assert on.status_code == 303
    assert switched_off(rconn, "shop-to-exact") is None


def test_an_unknown_switch_value_or_integration_is_a_clear_error(console, rconn):
    csrf = csrf_of(console.get("/console/").text)
    bad = console.post("/console/integrations/shop-to-exact/switch", data={"switch": "maybe", "csrf": csrf})
    assert bad.status_code == 400 and "must be" in bad.text
    unknown = console.post("/console/integrations/nope/switch", data={"switch": "off", "csrf": csrf})
    assert unknown.status_code == 404 and "no integration" in unknown.text


def test_get_never_changes_state(console, rconn):
    before = sorted(rconn.keys("*"))
    for path in ["/console/integrations/shop-to-exact/switch?switch=off", "/console/logout",
                 "/console/connect/exact", "/console/integrations/shop-to-exact/failed/x/replay"]:  # fmt: skip
        assert console.get(path).status_code == 405
    for path in ["/console/", "/console/integrations/shop-to-exact", "/console/integrations/shop-to-exact/failed",
                 "/console/integrations/shop-to-exact/mappings/orders"]:  # fmt: skip
        assert console.get(path).status_code == 200
    assert sorted(rconn.keys("*")) == before
    assert switched_off(rconn, "shop-to-exact") is None


# -- the integrations page --------------------------------------------------------------------------------


def test_the_integrations_page_shows_health(console, rconn):
    switch_off(rconn, "shop-to-exact", "the shop uninstalled Koppel")
    rconn.hset(
        "koppel:exact:ratelimit:4242",
        mapping={
            "mrem": 17,
            "mreset": int(time.time() * 1000) + 30_000,
            "drem": 4000,
            "dreset": int(time.time() * 1000) + 3_600_000,
        },
    )
    rconn.set("koppel:exact:tokens:exact:division", "4242")
    page = console.get("/console/").text
    row = row_of(page)
    assert "the shop uninstalled Koppel" in row
    assert "none yet" in row  # the switch's own activity entry is no event
    assert "exact: 17/60 this minute, 4000/5000 today" in row
    assert 'name="connect" value="exact"' in row and "Connect exact" in row  # Exact needs consent
    assert '<div class="connection" data-system="exact" data-connection="consent needed">' in row
    assert re.search(r'class="failures"><a [^>]*>0</a>', row)


def test_the_connect_button_starts_the_consent_or_says_what_is_missing(console):
    csrf = csrf_of(console.get("/console/").text)
    response = console.post("/console/connect/exact", data={"csrf": csrf})
    assert response.status_code == 400
    assert "redirect_uri" in response.text  # the sample config's Exact system has none
    assert console.post("/console/connect/shop", data={"csrf": csrf}).status_code == 404


def polled_config() -> Config:
    """Exact polled for orders that go to a WooCommerce shop, Exact's consent redirect configured."""
    return parse_config(
        {
            "gateway": {"admin_token": "env:ADMIN_TOKEN"},
            "systems": [
                {"id": "exact", "kind": "exactonline", "credentials": {"client_secret": "env:EXACT_CLIENT_SECRET"},
                 "settings": {"client_id": "koppel-app", "redirect_uri": "https://koppel.example/oauth/exact/callback"}},
                {"id": "shop", "kind": "woocommerce", "base_url": "https://shop.example",
                 "credentials": {"consumer_key": "env:WC_KEY", "consumer_secret": "env:WC_SECRET"}},
            ],
            "integrations": [{"id": "exact-to-shop", "source": "exact", "target": "shop", "flows": ["orders"]}],
        },
        environ=ENV | {"WC_KEY": "ck"},
    )  # fmt: skip


def test_the_integrations_page_shows_when_each_polled_stream_was_last_read(redis_url, rconn):
    from workers.pollers import note_polled

    note_polled(rconn, "exact", "4242", "SalesOrders", at=time.time() - 300)
    live = serve(create_app(polled_config(), redis_url))
    try:
        with httpx.Client(base_url=live.url, timeout=10) as client:
            client.post("/console/login", data={"token": TOKEN})
            row = row_of(client.get("/console/").text, "exact-to-shop")
            assert re.search(r'class="polls">4242:SalesOrders: <span [^>]*title="[^"]+">5 min ago</span>', row), row
            consent = client.post("/console/connect/exact", data={"csrf": csrf_of(client.get("/console/").text)})
            assert consent.status_code == 303  # through the gateway's start, on the redirect URI's host
            assert consent.headers["location"].startswith("https://koppel.example/oauth/exact/start?ticket=")
            start = client.get(consent.headers["location"].replace("https://koppel.example", ""))
            assert start.status_code == 303 and "koppel_oauth_" in start.headers["set-cookie"]
            assert start.headers["location"].startswith("https://start.exactonline.nl/api/oauth2/auth?")
            assert "redirect_uri=https%3A%2F%2Fkoppel.example%2Foauth%2Fexact%2Fcallback" in start.headers["location"]
    finally:
        live.stop()


def test_over_https_the_session_cookie_is_secure(redis_url):
    app = create_app(console_config(), redis_url)

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://koppel.example") as client:
            return await client.post("/console/login", data={"token": TOKEN}), await client.get("/console/")

    login, page = asyncio.run(main())
    assert login.status_code == 303
    assert "Secure" in login.headers["set-cookie"] and "Path=/;" in login.headers["set-cookie"]  # /ops sees it too
    assert page.status_code == 200 and "<h1>Integrations</h1>" in page.text


def test_the_mapping_page_names_what_is_wrong(redis_url):
    broken = {"orders": {"exactonline": {"Description": "$left('x' &"}}}
    for config, path in ((console_config(mappings=broken), "mappings/orders"), (console_config(), "mappings/orders")):
        live = serve(create_app(config, redis_url))
        try:
            with httpx.Client(base_url=live.url, timeout=10) as client:
                client.post("/console/login", data={"token": TOKEN})
                page = client.get(f"/console/integrations/shop-to-exact/{path}")
                assert page.status_code == 200
                if config.integrations[0].mappings:
                    assert 'id="error"' in page.text and "the mapping does not compile" in page.text
                    assert "Description" in page.text and 'id="mapping-diff"' in page.text
                    assert 'form id="preview"' not in page.text
                    continue
                assert 'id="mapping-diff-none"' in page.text and 'id="output"' not in page.text  # no sample yet
                posted = client.post(f"/console/integrations/shop-to-exact/{path}",
                                     data={"csrf": csrf_of(page.text), "input": '{"id": "not an order"}'})  # fmt: skip
                assert posted.status_code == 200
                assert 'id="preview-error"' in posted.text
                assert "cannot be mapped: SalesOrderLines: is required" in posted.text
        finally:
            live.stop()


def test_the_last_event_is_the_last_one_handled_not_the_switchs_marker(console, rconn):
    now = time.time()
    log = ActivityLog(rconn)
    log.record(Activity("shop-to-exact", "orders", "order.created", "8203", "created", now - 120, now - 120,
                        number="8203", target_id="guid-1"))  # fmt: skip
    switch_off(rconn, "shop-to-exact", "the shop uninstalled Koppel")
    cell = re.search(r'<td class="last-event">(.*?)</td>', row_of(console.get("/console/").text), re.S)
    assert cell and "2 min ago" in cell.group(1) and ">created<" in cell.group(1)
    assert "order.created 8203 (#8203)" in cell.group(1)
    log.record(Activity("shop-to-exact", "orders", "order.created", "8204", "skipped", now, now,
                        reason="switched off: the shop uninstalled Koppel"))  # fmt: skip
    cell = re.search(r'<td class="last-event">(.*?)</td>', row_of(console.get("/console/").text), re.S)
    assert cell and "skipped (switched off)" in cell.group(1) and "order.created 8204" in cell.group(1)


def test_the_connection_shows_whether_the_system_is_authorised(console, rconn, monkeypatch):
    def connection() -> str:
        found = re.search(r'<div class="connection" data-system="exact" data-connection="([^"]+)">(.*?)</div>',
                          row_of(console.get("/console/").text), re.S)  # fmt: skip
        assert found
        return found.group(1) + " | " + " ".join(found.group(2).split())

    assert connection().startswith('consent needed | exact: <span class="off">consent needed</span>')
    assert "Connect exact</button>" in connection()
    store = TokenStore(rconn, "exact")
    store.save(Tokens("access-SECRET", "refresh-SECRET", time.time() + 600, time.time() - 3 * 3600))
    shown = connection()
    assert shown.startswith("connected | ") and "since 3 h ago" in shown and "Reconnect exact</button>" in shown
    store.note_refresh_refused("Exact Online refused the refresh_token grant (400 invalid_grant)", at=time.time() - 60)
    shown = connection()
    assert shown.startswith("refresh failing | ") and "token refresh failing" in shown and "since 1 min ago" in shown
    assert "invalid_grant" in shown and "Reconnect exact</button>" in shown
    assert "access-SECRET" not in console.get("/console/").text
    monkeypatch.setenv(vault.KEY_VAR, vault.new_key())  # not the key the tokens were stored with
    shown = connection()
    assert shown.startswith('consent needed | exact: <span class="off" title="system exact&#39;s stored OAuth tokens: '
                            "encrypted with another key than KOPPEL_SECRET_KEY"), shown  # fmt: skip
    assert "Connect exact</button>" in shown


def test_failed_work_names_the_event_and_the_reason_readably(console, rconn):
    (job_id,) = failed_jobs(rconn, 1)
    page = console.get("/console/integrations/shop-to-exact/failed").text
    row = re.search(rf'<tr data-job="{job_id}">(.*?)</tr>', page, re.S)
    assert row, page
    assert '<span class="topic">order.created 8201 (#8201)</span>' in row.group(1)
    assert "from shop" in row.group(1)
    reason = re.search(r'<td class="reason" title="([^"]*)">(.*?)</td>', row.group(1), re.S)
    assert reason and reason.group(2).startswith("SandboxRefused: GET crm/Accounts: Exact answered 400 for ")
    assert reason.group(1).startswith("tests.console_support.SandboxRefused: ")  # the full name on hover
    assert "process_event" not in page and "fail_with_reason(" not in page and EMAIL not in page
    remap = console.get(f"/console/integrations/shop-to-exact/failed/{job_id}/remap").text
    assert '<span class="event">order.created 8201 (#8201)</span> from shop' in remap
    assert "SandboxRefused: GET crm/Accounts" in remap and EMAIL not in remap


def test_failed_work_is_counted_in_one_pass_and_paged(console, rconn):
    shop = failed_jobs(rconn, 53)
    other = failed_jobs(rconn, 2, endpoint="elsewhere", first=9001)  # another endpoint's: not this integration's
    assert re.search(r'class="failures"><a [^>]*>53</a>', row_of(console.get("/console/").text))
    first = console.get("/console/integrations/shop-to-exact/failed").text
    second = console.get("/console/integrations/shop-to-exact/failed?page=2").text
    listed = [re.findall(r'<tr data-job="([^"]+)">', page) for page in (first, second)]
    assert [len(ids) for ids in listed] == [50, 3]
    assert sorted(listed[0] + listed[1]) == sorted(shop) and not set(other) & set(listed[0] + listed[1])
    assert "53 failed job(s), newest first: page 1 of 2" in first and 'rel="next" href="?page=2"' in first
    assert 'rel="prev" href="?page=1"' in second and 'rel="next"' not in second
    assert (
        re.findall(r'<tr data-job="([^"]+)">', console.get("/console/integrations/shop-to-exact/failed?page=9").text)
        == listed[1]
    )
    for wrong in ("0", "x", "-1", "²", "1" * 40):
        response = console.get(f"/console/integrations/shop-to-exact/failed?page={wrong}")
        assert response.status_code == 400 and "page must be a page number" in response.text


def test_the_inbox_backlog_shows_with_a_warning_while_no_worker_runs(console, rconn):
    panel = re.compile(
        r'<section id="inbox" class="([^"]*)" data-depth="(\d+)" data-workers="(\d+)">(.*?)</section>', re.S
    )
    found = panel.search(console.get("/console/").text)
    assert found and found.group(2, 3) == ("0", "0") and "empty" in found.group(4)
    assert 'id="no-worker"' in found.group(4) and "koppel worker" in found.group(4)
    for n in range(2):
        rconn.xadd("koppel:inbox:koppel", {"id": f"job-{n}", "e": '{"endpoint": "shop", "topic": "order.created"}'},
                   id=f"{int((time.time() - 600) * 1000) + n}-0")  # fmt: skip
    found = panel.search(console.get("/console/").text)
    assert found and found.group(1) == "panel warn" and found.group(2) == "2"
    text = found.group(4)
    assert "2 accepted event(s) no worker has taken yet" in text and '<span id="inbox-age">10 min</span>' in text
    assert "the accepted events wait" in found.group(4)
    worker = Worker([make_queue(rconn, "koppel")], connection=rconn)
    worker.register_birth()
    try:
        found = panel.search(console.get("/console/").text)
        assert found and found.group(1) == "panel" and found.group(3) == "1" and 'id="no-worker"' not in found.group(4)
    finally:
        worker.register_death()


def test_every_logged_in_page_links_the_setup_wizard(console, anon):
    for path in ("/console/", "/console/integrations/shop-to-exact", "/console/setup"):
        assert '<a id="nav-setup" href="/console/setup">' in console.get(path).text
    assert 'id="nav-setup"' not in anon.get("/console/login").text
