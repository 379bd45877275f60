"""The console's Webhooks page: what `koppel endpoints sync --dry-run` says, per endpoint and topic, and a
"Sync webhooks" button (POST with the session's CSRF token) that does the sync — against the WooCommerce
sandbox over real HTTP, the gateway served by uvicorn."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox
from gateway.activity import ActivityLog
from gateway.app import create_app
from gateway.config import Config, parse_config
from gateway.redisserver import free_port
from gateway.stack import LiveServer, serve
from tests.conftest import SECRETS

pytestmark = pytest.mark.integration

KEY, SECRET, HOOK_SECRET = "ck_console", "cs_console", "wh-console-secret"
ENV = SECRETS | {"T_HOOK": HOOK_SECRET, "T_KEY": KEY, "T_SECRET": SECRET}
PUBLIC = "http://127.0.0.1:9"


def hooks_config(shop_url: str, *, public_url: str | None = PUBLIC) -> Config:
    """Endpoint `shop-hooks` of the shop system `shop`, feeding orders to another shop (`other`)."""
    creds = {"consumer_key": "env:T_KEY", "consumer_secret": "env:T_SECRET"}
    return parse_config(
        {
            "gateway": {"admin_token": "env:ADMIN_TOKEN"} | ({"public_url": public_url} if public_url else {}),
            "endpoints": [{"id": "shop-hooks", "kind": "woocommerce", "secret": "env:T_HOOK", "system": "shop"}],
            "systems": [{"id": "shop", "kind": "woocommerce", "base_url": shop_url, "credentials": creds},
                        {"id": "other", "kind": "woocommerce", "base_url": shop_url, "credentials": creds}],
            "integrations": [{"id": "hooks-to-other", "source": "shop-hooks", "target": "other", "flows": ["orders"]}],
        },
        environ=ENV,
    )  # fmt: skip


@pytest.fixture
def shop() -> Iterator[tuple[LiveServer, WooCommerceClient]]:
    live = serve(create_sandbox(consumer_key=KEY, consumer_secret=SECRET))
    try:
        with httpx.Client(timeout=10) as http:
            yield live, WooCommerceClient(http, base_url=live.url, consumer_key=KEY, consumer_secret=SECRET)
    finally:
        live.stop()


def logged_in(config: Config, redis_url: str) -> Any:
    """A context: a console client logged in to a gateway serving `config`."""

    class Session:
        def __enter__(self) -> httpx.Client:
            self.server = serve(create_app(config, redis_url))
            self.client = httpx.Client(base_url=self.server.url, timeout=60)
            response = self.client.post("/console/login", data={"token": SECRETS["ADMIN_TOKEN"]})
            assert response.status_code == 303, response.text
            return self.client

        def __exit__(self, *exc: object) -> None:
            self.client.close()
            self.server.stop()

    return Session()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def koppels(client: WooCommerceClient) -> list[dict[str, Any]]:
    return [h for h in client.webhooks() if h["name"].startswith("Koppel")]


def test_the_page_shows_the_dry_run_plan_and_changes_nothing(shop, redis_url, rconn):
    live, client = shop
    client.create_webhook(topic="order.created", delivery_url=f"{PUBLIC}/webhooks/shop-hooks", secret="x",
                          name="Koppel shop-hooks: order.created")  # fmt: skip
    hook = koppels(client)[0]
    client.update_webhook(hook["id"], {"status": "disabled"})
    with logged_in(hooks_config(live.url), redis_url) as console:
        page = console.get("/console/webhooks")
    assert page.status_code == 200, page.text
    assert 'data-endpoint="shop-hooks" data-in-sync="no"' in page.text
    assert re.search(r'data-topic="order.created" data-action="enable">.*?would re-activate', page.text)
    assert re.search(r'data-topic="order.updated" data-action="create">.*?would create', page.text)
    assert 'id="webhooks-sync"' in page.text
    assert [(h["topic"], h["status"]) for h in koppels(client)] == [("order.created", "disabled")]
    assert ActivityLog(rconn).entries("hooks-to-other") == []


@pytest.mark.parametrize("csrf", [None, "wrong"])
def test_a_sync_without_its_csrf_token_is_refused_and_changes_nothing(shop, redis_url, csrf):
    live, client = shop
    with logged_in(hooks_config(live.url), redis_url) as console:
        response = console.post("/console/webhooks", data={"sync": "1"} | ({"csrf": csrf} if csrf else {}))
    assert response.status_code == 403 and "CSRF token is missing or wrong" in response.text
    assert koppels(client) == []


def test_the_sync_button_creates_the_shops_webhooks_and_says_what_it_did(shop, redis_url, rconn):
    live, client = shop
    with logged_in(hooks_config(live.url), redis_url) as console:
        token = csrf_of(console.get("/console/webhooks").text)
        done = console.post("/console/webhooks", data={"csrf": token, "sync": "1"})
        again = console.get("/console/webhooks")
    assert done.status_code == 200, done.text
    assert "created webhook" in done.text and "for order.created → http://127.0.0.1:9/webhooks/shop-hooks" in done.text
    assert "done: 2 change(s)" in done.text
    hooks = koppels(client)
    assert sorted(h["topic"] for h in hooks) == ["order.created", "order.updated"]
    assert {h["delivery_url"] for h in hooks} == {f"{PUBLIC}/webhooks/shop-hooks"}
    assert {h["status"] for h in hooks} == {"active"}
    assert {e.outcome for e in ActivityLog(rconn).entries("hooks-to-other")} == {"created"}
    assert 'data-in-sync="yes"' in again.text and 'data-action="keep"' in again.text
    assert 'data-action="create"' not in again.text
    assert HOOK_SECRET not in done.text + again.text


def test_an_unreachable_shop_is_the_clis_sentence(redis_url):
    url = f"http://127.0.0.1:{free_port()}"
    with logged_in(hooks_config(url), redis_url) as console:
        page = console.get("/console/webhooks")
        token = csrf_of(page.text)
        done = console.post("/console/webhooks", data={"csrf": token, "sync": "1"})
    for response in (page, done):
        assert response.status_code == 200
        failures = re.search(r'<ul id="webhooks-failures"[^>]*>(.*?)</ul>', response.text, re.S)
        assert failures, response.text
        assert f"endpoint shop-hooks: shop could not be reached at {url}" in failures.group(1)
        assert "check systems.shop.base_url and that the shop answers" in failures.group(1)
        assert "Traceback" not in response.text


def test_without_a_public_url_the_page_says_what_to_set(redis_url):
    with logged_in(hooks_config("http://127.0.0.1:1", public_url=None), redis_url) as console:
        page = console.get("/console/webhooks")
        done = console.post("/console/webhooks", data={"csrf": csrf_of(page.text), "sync": "1"})
    for response in (page, done):
        assert response.status_code == 200
        assert "gateway.public_url: required to manage webhooks" in response.text
        assert 'id="webhooks-sync"' not in response.text


def test_the_menu_links_the_page(redis_url):
    with logged_in(hooks_config("http://127.0.0.1:1"), redis_url) as console:
        assert '<a id="nav-webhooks" href="/console/webhooks">' in console.get("/console/").text
