"""The web console in a real browser (Debian's headless Chromium), used as an operator uses it: log in, read
the integrations' health, switch one off and on, read an integration's activity and payloads, replay failed
work (also with the current mapping, after its diff), log out; a cross-site form post refused; the set-up
wizard walked to a config that passes the check.

Behind the console: a real gateway (uvicorn), real Redis, and jobs run by RQ's worker code that book
WooCommerce orders in the Exact Online sandbox over HTTP (tests/console_support.py's `Env`). Pages are
read through the stable markup docs/console.md lists. Screenshots of every step, and of a failure:
.koppel/artifacts/screenshots/<test>-<step>.png (tests/browser_support.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis
from selenium.webdriver.common.by import By
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from gateway import wizard
from gateway.app import create_app
from gateway.config import Config, parse_config
from gateway.ingest import make_queue
from gateway.stack import serve
from tests import browser_support
from tests import pairs_support as pairs
from tests.browser_support import Browser, browser_at
from tests.console_support import CHANGED, EMAIL, SKUS, Env, config_for
from tests.samples import SECRETS
from workers.switches import switched_off

pytestmark = pytest.mark.integration

TOKEN = pairs.ENV["ADMIN_TOKEN"]
SHOP, SQUARESPACE = "shop-to-exact", "sq-to-exact"
chromium_driver = browser_support.chromium_driver


def console_config(exact_url: str) -> Config:
    """What the gateway serves: the shop's orders into Exact with a changed mapping (the worker runs the default,
    `config_for`), and a second integration, Squarespace's orders into the same Exact."""
    config = config_for(exact_url, mappings=CHANGED).model_dump(mode="python")
    data = {
        "gateway": {"admin_token": "env:ADMIN_TOKEN"},
        "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"},
                      {"id": "sq", "kind": "squarespace", "secret": "env:SQ_SECRET"}],
        "systems": [pairs.exact_system(exact_url)],
        "integrations": [{"id": SHOP, "source": "shop", "target": "exact", "flows": ["orders"],
                          "mappings": config["integrations"][0]["mappings"]},
                         {"id": SQUARESPACE, "source": "sq", "target": "exact", "flows": ["orders"]}],
    }  # fmt: skip
    return parse_config(data, environ=pairs.ENV | {"WC_SECRET": "s", "SQ_SECRET": SECRETS["SQ_SECRET"]})


@pytest.fixture
def env(rconn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """The Exact sandbox (authorised, the shop's SKUs as items), the gateway serving the console, and the
    worker's runtime (default mappings) installed for `Env.order`."""
    with pairs.exact_served() as (exact, _), httpx.Client(timeout=10) as http:
        pairs.authorise_exact(http, exact, rconn)
        http.post(f"{exact.url}/sandbox/seed/items", json={"skus": SKUS}).raise_for_status()
        gateway = serve(create_app(console_config(exact.url), redis_url), name="gateway")
        try:
            with (
                httpx.Client(base_url=gateway.url, timeout=10) as client,
                pairs.installed(config_for(exact.url), rconn, monkeypatch) as rt,
            ):
                yield Env(exact, client, http, rconn, redis_url, rt.config)
        finally:
            gateway.stop()


@pytest.fixture
def browser(request: pytest.FixtureRequest, chromium_driver, env: Env) -> Iterator[Browser]:
    yield from browser_at(request, chromium_driver, str(env.console.base_url).rstrip("/"))


def log_in(browser: Browser) -> None:
    browser.open("/console/login")
    browser.fill("form#login input[name=token]", TOKEN)
    browser.follow("form#login button[name=login]")
    browser.find("table#integrations")


def row(browser: Browser, integration: str) -> str:
    return f'table#integrations tr[data-integration="{integration}"]'


# -- tests ---------------------------------------------------------------------------------------------------


def test_login_refuses_a_wrong_token_and_logout_ends_the_session(browser):
    browser.open("/console/")
    browser.find("form#login")  # no session: the login form
    assert browser.path == "/console/login"
    header = browser.height("header#top")
    browser.shot("login")
    browser.fill("form#login input[name=token]", "not-the-token")
    browser.follow("form#login button[name=login]")
    assert "not the gateway's admin token" in browser.find("#error").text
    assert browser.absent("table#integrations")
    browser.shot("wrong-token")

    browser.fill("form#login input[name=token]", TOKEN)
    browser.follow("form#login button[name=login]")
    browser.find("table#integrations")
    cookie = browser.driver.get_cookie("koppel_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in browser.driver.page_source
    assert browser.height("header#top") == header  # the same header, logged in or not
    browser.shot("logged-in")

    browser.follow("form#logout button[name=logout]")
    browser.find("form#login")
    assert browser.driver.get_cookie("koppel_console") is None
    browser.open("/console/")
    browser.find("form#login")  # the session is gone
    assert browser.path == "/console/login"
    browser.shot("logged-out")
    browser.driver.add_cookie(cookie)  # a copy of the cookie, kept from before the logout
    assert browser.driver.get_cookie("koppel_console") == cookie
    browser.open("/console/")
    browser.find("form#login")  # ended for good
    assert browser.path == "/console/login"


def test_integrations_show_their_health_and_switch_off_and_on(browser, env):
    env.order(8101)
    log_in(browser)
    shop, squarespace = row(browser, SHOP), row(browser, SQUARESPACE)
    assert browser.find(shop).get_attribute("data-state") == "on"
    assert "created" in browser.find(f"{shop} td.last-event").text
    assert "order.created 8101 (#8101)" in browser.find(f"{shop} td.last-event").text
    assert browser.find(f"{shop} td.failures a").text == "0"
    assert "exact:" in browser.find(f"{shop} td.budget").text  # Exact's rate budget left
    assert browser.find(f"{squarespace} td.last-event").text == "none yet"
    assert browser.find(f"{shop} .connection").get_attribute("data-connection") == "connected"  # authorised
    assert [b.text for b in browser.all(f"{shop} td.consent button[name=connect]")] == ["Reconnect exact"]
    for cell in (f"{shop} td.switch button", f"{shop} td.consent button", f"{shop} td.last-event span[title]"):
        assert browser.lines(cell) == 1, f"{cell} wraps"
    assert browser.find("section#inbox").get_attribute("data-depth") == "0"
    assert "No worker runs" in browser.find("#no-worker").text  # the test runs jobs without a worker process
    browser.shot("integrations")

    browser.follow(f"{shop} form.switch button[name=switch][value=off]")
    assert browser.find(shop).get_attribute("data-state") == "off"
    assert "switched off by an operator in the web console" in browser.find(f"{shop} td.state").text
    assert browser.find(squarespace).get_attribute("data-state") == "on"  # only the one switched
    assert switched_off(env.conn, SHOP) and not switched_off(env.conn, SQUARESPACE)
    browser.shot("switched-off")

    browser.follow(f"{shop} form.switch button[name=switch][value=on]")
    assert browser.find(shop).get_attribute("data-state") == "on"
    assert switched_off(env.conn, SHOP) is None
    browser.shot("switched-on")


def test_activity_shows_the_payloads_with_personal_data_masked_until_asked(browser, env):
    job = env.order(8102)
    log_in(browser)
    browser.follow(f"{row(browser, SHOP)} td.id a")
    entry = browser.find(f'table#activity tr[data-job="{job}"]')
    assert entry.get_attribute("data-outcome") == "created"
    browser.click(f'tr[data-snapshot="{job}"] details > summary')
    payloads = browser.find(f'tr[data-snapshot="{job}"] details')
    assert "POST /salesorder/SalesOrders → 201" in payloads.text
    assert '"YourRef": "8102"' in browser.find(f'tr[data-snapshot="{job}"] pre.mapped:last-of-type').text
    assert "•••" in browser.find(f'tr[data-snapshot="{job}"] pre.received').text
    for personal in (EMAIL, "de Vries", "Keizersgracht"):
        assert personal not in browser.driver.page_source
    browser.shot("masked")

    browser.follow("#pii-toggle a")
    assert browser.path.endswith("?pii=show")
    browser.click(f'tr[data-snapshot="{job}"] details > summary')
    assert EMAIL in browser.find(f'tr[data-snapshot="{job}"] pre.received').text
    assert "Keizersgracht" in browser.driver.page_source
    browser.shot("personal-data-shown")


def test_failed_work_is_replayed_and_replayed_with_the_current_mapping_after_its_diff(browser, env):
    remapped = env.failed_after_mapping(8203)  # Exact refused the mapped order
    again = env.order(8204)  # Exact still refuses: fails before the mapping
    queue = make_queue(env.conn, "koppel")
    assert again in queue.failed_job_registry.get_job_ids()
    log_in(browser)
    assert browser.find(f"{row(browser, SHOP)} td.failures a").text == "2"
    browser.follow(f"{row(browser, SHOP)} td.failures a")
    browser.find(f'table#failed tr[data-job="{again}"]')
    assert browser.find(f'table#failed tr[data-job="{remapped}"] td.reason').text.startswith("ExactRequestError: ")
    assert browser.find(f'table#failed tr[data-job="{again}"] td.event .topic').text == "order.created 8204 (#8204)"
    assert browser.lines(f'table#failed tr[data-job="{again}"] td.when') == 1
    browser.shot("failed-work")

    browser.follow(f'table#failed tr[data-job="{again}"] form.replay button[name=replay]')
    assert f"Job {again} is queued again" in browser.find("#message").text
    assert again in queue.job_ids and again not in queue.failed_job_registry.get_job_ids()
    browser.shot("replayed")

    browser.driver.back()
    browser.driver.refresh()
    assert browser.absent(f'table#failed tr[data-job="{again}"]')
    browser.follow(f'table#failed tr[data-job="{remapped}"] a.remap')
    diff = browser.find("pre#diff").text.splitlines()
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ['-  "Description": "Webshop order 8203",', '+  "Description": "Console 8203",']  # nothing else
    assert EMAIL not in browser.driver.page_source
    assert remapped in queue.failed_job_registry.get_job_ids()  # looking changed nothing
    browser.shot("diff")

    browser.follow("form#confirm-replay button[name=replay]")
    assert "queued again with the current mapping" in browser.find("#message").text
    assert remapped in queue.job_ids and remapped not in queue.failed_job_registry.get_job_ids()
    browser.shot("replayed-with-current-mapping")


@pytest.fixture
def elsewhere() -> Iterator[dict[str, str]]:
    """Another site (another port: cookies do not tell ports apart, so the browser sends the console's cookie
    with its forms, SameSite=Strict or not) serving the page in `pages` under its name."""
    pages: dict[str, str] = {}

    async def page(request: Request) -> HTMLResponse:
        name = request.path_params["name"]
        return HTMLResponse(pages[name]) if name in pages else HTMLResponse("", 404)

    live = serve(Starlette(routes=[Route("/{name}", page)]), name="another site")
    pages["_url"] = live.url
    yield pages
    live.stop()


def test_a_form_posted_from_another_site_without_the_csrf_token_is_refused(browser, env, elsewhere):
    log_in(browser)
    target = f"{browser.base_url}/console/integrations/{SHOP}/switch"
    elsewhere["prize"] = (
        "<!doctype html><title>You won</title>"
        f'<form id="f" method="post" action="{target}"><input type="hidden" name="switch" value="off">'
        '<button type="submit">Claim your prize</button></form>'
    )
    browser.driver.get(elsewhere["_url"] + "/prize")
    browser.shot("other-site")
    browser.follow("form#f button")
    assert browser.path == f"/console/integrations/{SHOP}/switch"
    refusal = browser.find("h1").text
    assert "Refused" in refusal and "CSRF" in refusal, refusal
    assert "Nothing was changed" in browser.find("#message").text
    browser.shot("refused")
    assert switched_off(env.conn, SHOP) is None
    browser.open("/console/")
    assert browser.find(row(browser, SHOP)).get_attribute("data-state") == "on"


@pytest.fixture
def bare_browser(request: pytest.FixtureRequest, chromium_driver, redis_url: str) -> Iterator[Browser]:
    """The browser at a gateway with nothing configured but the admin token."""
    config = parse_config({"gateway": {"admin_token": "env:ADMIN_TOKEN"}}, environ=pairs.ENV)
    gateway = serve(create_app(config, redis_url), name="gateway")
    try:
        yield from browser_at(request, chromium_driver, gateway.url)
    finally:
        gateway.stop()


def test_the_setup_wizard_walks_to_a_config_that_passes_the_check(bare_browser):
    browser = bare_browser
    browser.open("/console/setup")
    browser.find("form#login")  # needs a session, as every console page
    browser.fill("form#login input[name=token]", TOKEN)
    browser.follow("form#login button[name=login]")
    browser.follow("#console-nav a#nav-setup")  # the wizard is in every page's navigation
    browser.find("form#setup")
    browser.shot("first-step")
    given = {"pair": "squarespace-exactonline", "gateway.public_url": "https://koppel.example",
             "exact.client_id": "exact-app"}  # fmt: skip
    flows = {"flows": {"orders"}, "flows_back": {"orders", "stock"}}
    refused = False
    for _ in range(40):
        if not browser.absent("pre#setup-toml"):
            break
        key = browser.driver.find_element(By.CSS_SELECTOR, "form#setup input[name=step]").get_attribute("value")
        if key == "pair":
            browser.click(f'form#setup input[name=value][value="{given["pair"]}"]')
        elif key in flows:
            for box in browser.all('form#setup input[type=checkbox][name^="flow."]'):
                if box.is_selected() != (box.get_attribute("name").removeprefix("flow.") in flows[key]):
                    box.click()
        elif key == "gateway.public_url" and not refused:
            assert browser.width("form#setup input#value") >= 600  # room for a URL
            browser.fill("form#setup input[name=value]", "koppel.example")
            browser.follow("form#setup button[name=next]")
            assert "is not an absolute http(s) URL" in browser.find("#error").text
            browser.shot("refused-answer")
            refused = True
            continue
        elif key in given:
            browser.fill("form#setup input[name=value]", given[key])
        browser.follow("form#setup button[name=next]")
        assert browser.absent("#error"), browser.find("#error").text
    assert refused
    assert browser.find("#setup-ok")
    expected, problems = wizard.complete({**given, "flows": "orders", "flows_back": "orders, stock"})
    assert not problems
    assert browser.find("pre#setup-toml").text.strip() == wizard.render(expected).strip()
    commands = browser.find("pre#setup-commands").text
    assert "koppel connect exact --config koppel.toml" in commands
    assert "koppel endpoints sync --config koppel.toml" in commands
    browser.shot("finished")


def test_the_queue_dashboard_opens_through_the_console_login_and_works_under_its_csp(browser, env):
    """rq-dashboard (its inline scripts, underscore's templates, bootstrap) renders under the operator pages'
    CSP, and its own POST (empty a queue) passes the same-origin check."""
    queue = make_queue(env.conn, "koppel")
    parked = queue.enqueue("workers.jobs.process_event", {"not": "an envelope"})
    browser.open("/ops/rq/")
    browser.find("form#login")  # no session: the console's login, which then brings the browser back
    assert browser.path == "/console/login?next=/ops/rq/"
    browser.fill("form#login input[name=token]", TOKEN)
    browser.follow("form#login button[name=login]")
    assert browser.path == "/ops/rq/"
    queues = browser.wait_for_text("koppel", "table#queues tbody tr[data-role=queue]")  # drawn by the page's scripts
    assert "Loading" not in browser.find("table#queues").text
    assert browser.driver.execute_script("return typeof jQuery === 'function' && typeof _ === 'function'")
    navbar = browser.driver.execute_script(
        "return getComputedStyle(document.querySelector('#navbar-dashboard')).display")  # fmt: skip
    assert navbar == "flex"  # bootstrap's stylesheet applies
    browser.shot("dashboard")
    assert queues.find_element(By.CSS_SELECTOR, "td").text == "koppel"

    browser.open("/ops/rq/0/view/jobs/koppel/queued/8/asc/1")
    browser.wait_for_text(parked.id, "table#jobs")
    browser.click("#empty-btn")
    browser.wait(lambda driver: driver.find_element(By.ID, "confirmation-modal-yes").is_displayed(), "the modal")
    browser.click("#confirmation-modal-yes")
    browser.wait(lambda driver: queue.count == 0, "the queue emptied by the dashboard's own POST")
    browser.shot("emptied")

    browser.open("/console/")
    link = browser.find("a#nav-queues")
    assert link.get_attribute("href").endswith("/ops/rq/")


def test_connect_in_the_console_goes_through_the_gateways_start_and_binds_the_consent_to_this_browser(
    request: pytest.FixtureRequest, chromium_driver, redis_url: str, rconn: redis.Redis
):
    """Connect: the console → the gateway's one-use start (the binding cookie) → Exact's consent → the callback,
    which stores the tokens because this browser brings the cookie; the same callback again is refused."""
    from connectors.exactonline.auth import TokenStore
    from connectors.exactonline.sandbox import create_sandbox
    from gateway.redisserver import free_port

    exact = serve(create_sandbox(), name="Exact Online sandbox")  # approves at once, any redirect URI
    port = free_port()
    system = pairs.exact_system(exact.url, redirect_uri=f"http://127.0.0.1:{port}/oauth/exact/callback")
    config = parse_config(
        {"gateway": {"admin_token": "env:ADMIN_TOKEN"}, "endpoints": [{"id": "shop", "kind": "woocommerce",
         "secret": "env:WC_SECRET"}], "systems": [system],
         "integrations": [{"id": SHOP, "source": "shop", "target": "exact", "flows": ["orders"]}]},
        environ=pairs.ENV | {"WC_SECRET": "s"},
    )  # fmt: skip
    gateway = serve(create_app(config, redis_url), port=port, name="gateway")
    try:
        for browser in browser_at(request, chromium_driver, gateway.url):
            log_in(browser)
            browser.follow('form.connect button[name=connect][value="exact"]')
            assert "Koppel is connected to Exact Online for system 'exact'" in browser.find("body").text
            callback = browser.driver.current_url
            assert callback.startswith(f"http://127.0.0.1:{port}/oauth/exact/callback?code=")
            browser.shot("connected")
            tokens = TokenStore(rconn, "exact").load()
            assert tokens is not None
            assert not [c for c in browser.driver.get_cookies() if c["name"].startswith("koppel_oauth_")]
            browser.driver.get(callback)  # the same state again
            assert "completed already" in browser.find("body").text
            assert TokenStore(rconn, "exact").load() == tokens
    finally:
        gateway.stop()
        exact.stop()
