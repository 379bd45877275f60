"""Failure notifications end to end: problems made by the real code paths (a worker's failing jobs, a refused
token refresh, the webhook check finding a disabled webhook) arrive as ONE grouped message at a local SMTP
server (apprise `mailto://`, no TLS) and at a local HTTP receiver (apprise `json://`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors import tokens
from connectors.exactonline.auth import TokenStore
from connectors.tokens import Tokens
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox
from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import KoppelError
from gateway.ingest import Ingestor, make_queue
from gateway.redisserver import free_port
from gateway.replay import failed_job_ids
from gateway.stack import LiveServer, serve
from tests.conftest import SECRETS, woo_order
from tests.pairs_support import ENV, authorise_exact, exact_served, exact_system, installed
from workers.inbox import InboxPump
from workers.notifier import dispatch
from workers.subscriptions import check
from workers.worker import run_worker

pytestmark = pytest.mark.integration


@dataclass
class Mailbox:
    """What the local SMTP server received."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=koppel@example.com&to=ops@example.com&mode=insecure"

    def texts(self) -> list[tuple[str, str]]:
        return [(str(m["subject"]), m.get_body(("plain",)).get_content()) for m in self.messages]  # type: ignore[union-attr]


@dataclass
class Receiver:
    """What the local HTTP receiver was posted."""

    live: LiveServer
    posts: list[dict[str, Any]]

    @property
    def url(self) -> str:
        return self.live.url.replace("http://", "json://") + "/notify"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    posts: list[dict[str, Any]] = []

    async def take(request: Request) -> Response:
        posts.append(json.loads(await request.body()))
        return Response(status_code=204)

    live = serve(Starlette(routes=[Route("/notify", take, methods=["POST"])]), name="notification receiver")
    try:
        yield Receiver(live, posts)
    finally:
        live.stop()


def shop_to_exact(exact_url: str, urls: list[str], events: list[str]) -> Config:
    return parse_config({
        "gateway": {"admin_token": "env:ADMIN_TOKEN", "public_url": "https://koppel.example"},
        "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
        "systems": [exact_system(exact_url)],
        "integrations": [{"id": "shop-exact", "source": "shop", "target": "exact", "flows": ["orders"],
                          "notify": {"urls": urls, "events": events, "window_seconds": 0}}],
    }, environ=SECRETS | ENV)  # fmt: skip


def deliver_orders(rconn: Any, *order_ids: int) -> list[str]:
    """WooCommerce order webhooks as the receiver stores them, pumped into jobs; their job ids."""
    envelopes = []
    for order_id in order_ids:
        order = json.loads(woo_order(order_id))
        envelopes.append(Envelope.wrap(Event("order.created", "order", str(order_id), f"k-{order_id}-{time.time_ns()}",
                                             order), source="woocommerce", endpoint="shop"))  # fmt: skip
    job_ids = [a.job_id for a in Ingestor(rconn).store(envelopes)]
    InboxPump(rconn, "koppel").drain(timeout=10)
    return job_ids


def run_dispatch_job(rconn: Any, config: Config, redis_url: str) -> None:
    """The dispatcher as a worker runs it: its job on Koppel's queue, taken by a (burst) worker."""
    make_queue(rconn, config.gateway.queue).enqueue("workers.notifier.dispatch")
    run_worker(config, redis_url, burst=True)


def test_orders_failing_for_one_reason_are_one_message_by_mail_and_json(rconn, redis_url, mailbox, receiver):
    with exact_served() as (live, _sandbox), httpx.Client(timeout=10) as http:
        authorise_exact(http, live, rconn)
        config = shop_to_exact(live.url, [mailbox.url, receiver.url], ["failure"])
        jobs = deliver_orders(rconn, 4711, 4712, 4713)  # each orders SKU KOP-1, which Exact does not hold
        run_worker(config, redis_url, burst=True)
        assert sorted(failed_job_ids(rconn, config, "shop-exact")) == sorted(jobs)
        run_dispatch_job(rconn, config, redis_url)

    [(subject, text)] = mailbox.texts()
    [post] = receiver.posts
    assert subject == post["title"] == "Koppel shop-exact: 3 orders failed for integration shop-exact"
    for body in (text, post["message"]):
        assert "SKU(s) KOP-1 do not exist as items in Exact Online" in body
        assert "Records: order 4711, order 4712, order 4713" in body
        assert "`koppel replay --integration shop-exact`" in body
        assert "https://koppel.example/console/integrations/shop-exact/failed" in body
        assert "jorg@example.com" not in body  # names records by id, no personal data


def test_a_refused_token_refresh_tells_the_operator_to_connect_again(rconn, redis_url, mailbox, receiver):
    with exact_served() as (live, _sandbox), httpx.Client(timeout=10) as http:
        authorise_exact(http, live, rconn)
        # The access token ran out and its refresh token is no longer valid (revoked, or spent elsewhere).
        stale = Tokens("expired-access", "revoked-refresh", expires_at=time.time() - 60, obtained_at=time.time() - 660)
        TokenStore(rconn, "exact").save(stale)
        config = shop_to_exact(live.url, [mailbox.url, receiver.url], ["consent"])
        deliver_orders(rconn, 5001, 5002)
        run_worker(config, redis_url, burst=True)
        run_dispatch_job(rconn, config, redis_url)

    [(subject, text)] = mailbox.texts()
    [post] = receiver.posts
    assert subject == post["title"]
    assert subject == "Koppel shop-exact: system exact must be connected again (integration shop-exact uses it)"
    for body in (text, post["message"]):
        assert "Exact Online refused the refresh_token grant (400 invalid_grant)" in body
        assert "run `koppel connect exact` and approve in the browser" in body
        assert "`koppel replay --integration shop-exact`" in body
        assert "revoked-refresh" not in body and "expired-access" not in body


KEY, SECRET, HOOK_SECRET = "ck_notify", "cs_notify", "wh-notify-secret"


def test_a_webhook_the_shop_disabled_is_reported_once_restored(rconn, monkeypatch, mailbox, receiver):
    shop = serve(create_sandbox(consumer_key=KEY, consumer_secret=SECRET), name="WooCommerce sandbox")
    credentials = {"consumer_key": "env:T_KEY", "consumer_secret": "env:T_SECRET"}
    config = parse_config({
        "gateway": {"public_url": "http://127.0.0.1:9/"},
        "endpoints": [{"id": "shop-hooks", "kind": "woocommerce", "secret": "env:T_HOOK", "system": "shop"}],
        "systems": [{"id": "shop", "kind": "woocommerce", "base_url": shop.url, "credentials": credentials},
                    {"id": "other", "kind": "woocommerce", "base_url": shop.url, "credentials": credentials}],
        "integrations": [{"id": "hooks-to-other", "source": "shop-hooks", "target": "other", "flows": ["orders"],
                          "notify": {"urls": [mailbox.url, receiver.url], "window_seconds": 0}}],
    }, environ={"T_KEY": KEY, "T_SECRET": SECRET, "T_HOOK": HOOK_SECRET})  # fmt: skip
    try:
        with httpx.Client(timeout=10) as http, installed(config, rconn, monkeypatch):
            client = WooCommerceClient(http, base_url=shop.url, consumer_key=KEY, consumer_secret=SECRET)
            check("shop-hooks")  # creates Koppel's webhooks
            hook = next(h for h in client.webhooks() if h["topic"] == "order.created")
            client.update_webhook(hook["id"], {"status": "disabled"})  # as WooCommerce does after failed deliveries
            dispatch()
            assert mailbox.messages == [] and receiver.posts == []  # creating webhooks is nothing to report
            result = check("shop-hooks")
            assert any(d.startswith(f"re-activated webhook {hook['id']}") for d in result["done"])
            dispatch()
    finally:
        shop.stop()

    [(subject, text)] = mailbox.texts()
    [post] = receiver.posts
    assert subject == post["title"]
    assert subject == "Koppel hooks-to-other: a webhook integration hooks-to-other receives was disabled by the source"
    for body in (text, post["message"]):
        disabled = f"shop disabled webhook {hook['id']} (order.created) of endpoint shop-hooks after failed deliveries"
        assert disabled in body
        assert "Koppel restored it and polls shop for what was missed" in body
        assert HOOK_SECRET not in body and SECRET not in body


def test_a_business_central_subscription_about_to_expire_that_cannot_be_renewed_is_reported(
    tmp_path, redis_url, rconn, monkeypatch, mailbox, receiver
):
    import tomlkit

    from connectors import registry
    from connectors.businesscentral.sandbox import create_sandbox as bc_sandbox
    from gateway.app import create_app
    from tests.test_businesscentral_webhooks import BC_SECRET, write_config

    monkeypatch.setenv("T_HOOK", "bc-notify-client-state")
    monkeypatch.setenv("T_BC", BC_SECRET)
    monkeypatch.setenv("T_KEY", KEY)
    monkeypatch.setenv("T_SECRET", SECRET)
    bc = serve(bc_sandbox(client_secret=BC_SECRET), name="bc sandbox")
    port = free_port()
    path = write_config(tmp_path / "koppel.toml", bc.url, "http://127.0.0.1:9", f"http://127.0.0.1:{port}")
    data = tomlkit.parse(path.read_text())
    data["integrations"][0]["notify"] = {"urls": [mailbox.url, receiver.url], "window_seconds": 0}  # type: ignore[index]
    path.write_text(tomlkit.dumps(data))
    config = registry.load(path)
    gateway = serve(create_app(config, redis_url), port=port, name="gateway")  # answers BC's handshake
    try:
        with httpx.Client(timeout=10) as http, installed(config, rconn, monkeypatch):
            # made two and a half days ago: it expires within a day, so the next check renews it
            http.post(f"{bc.url}/sandbox/clock", json={"offset": -2.5 * 86400}).raise_for_status()
            check("bc-hooks")
            http.post(f"{bc.url}/sandbox/clock", json={"offset": 0}).raise_for_status()
            gateway.stop()  # the renewal's handshake cannot reach the gateway: BC refuses to renew
            with pytest.raises(KoppelError, match="did not answer the validation request"):
                check("bc-hooks")
            dispatch()
    finally:
        gateway.stop()
        bc.stop()

    [(subject, text)] = mailbox.texts()
    [post] = receiver.posts
    assert subject == post["title"]
    assert subject == "Koppel bc-to-shop: a webhook subscription of integration bc-to-shop is about to expire"
    for body in (text, post["message"]):
        assert "endpoint bc-hooks: the webhook subscription for customers expires at " in body
        assert "and was not renewed" in body and "`koppel endpoints sync --endpoint bc-hooks`" in body
        assert "did not answer the validation request" in body
        assert "bc-notify-client-state" not in body


def test_an_unreachable_receiver_is_one_log_line_without_the_urls_secret_and_kept_for_later(rconn, caplog):
    from gateway import notify
    from workers.notifier import Dispatcher

    url = f"json://koppel:pa55-in-url@127.0.0.1:{free_port()}/notify"  # nothing listens there
    config = shop_to_exact("http://127.0.0.1:9", [url], ["failure"])
    notify.record(rconn, "failure", "a reason", integration="shop-exact", item="order 1", noun="order")
    with caplog.at_level(logging.DEBUG):
        outcome = Dispatcher(rconn, config).run()
    assert outcome.failed == 1 and outcome.sent == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    line = warnings[0].getMessage()
    assert line.startswith("integration shop-exact: notify.urls[0] (JSON): failure message not delivered (")
    assert "next try in 60 s" in line
    assert "pa55-in-url" not in caplog.text
    assert rconn.zcard("koppel:notify:outbox") == 1


def test_a_poller_whose_polls_fail_for_too_long_is_reported_with_its_last_error(rconn, monkeypatch, mailbox, receiver):
    from workers.notifier import Dispatcher
    from workers.pollers import poll, polled_streams

    with exact_served() as (live, _sandbox), httpx.Client(timeout=10) as http:
        authorise_exact(http, live, rconn)
        config = parse_config({
            "systems": [exact_system(live.url),
                        {"id": "shop", "kind": "woocommerce", "credentials": {"key": "env:WC_SECRET"}}],
            "integrations": [{"id": "exact-shop", "source": "exact", "target": "shop", "flows": ["orders"],
                              "notify": {"urls": [mailbox.url, receiver.url], "events": ["poller_stalled"],
                                         "window_seconds": 0, "poller_stalled_seconds": 600}}],
        }, environ=SECRETS | ENV)  # fmt: skip
        stream = polled_streams(config)["exact"][0]
        with installed(config, rconn, monkeypatch):
            Dispatcher(rconn, config).run()  # starts watching
            assert "pages" in poll("exact", stream)  # a good poll (nothing new to read)
            monkeypatch.setattr(tokens, "RECHECK", 0)  # the worker's copy of the tokens is not used: read each time
            TokenStore(rconn, "exact").delete()  # then the authorisation is gone: every poll fails
            with pytest.raises(KoppelError, match="no Exact Online authorisation"):
                poll("exact", stream)
            assert Dispatcher(rconn, config, clock=lambda: time.time() + 300).run().stalled == 0
            later = Dispatcher(rconn, config, clock=lambda: time.time() + 601).run()
    assert later.stalled == 1 and later.sent == 2
    [(subject, text)] = mailbox.texts()
    [post] = receiver.posts
    assert subject == post["title"]
    assert subject == "Koppel exact-shop: polling exact stopped advancing (integration exact-shop reads it)"
    for body in (text, post["message"]):
        assert f"stream {stream} has had no successful poll since " in body
        assert "the last poll failed: no Exact Online authorisation for system 'exact'" in body
        assert "koppel connect exact" in body


def test_orders_whose_retries_ran_out_are_one_failure_message(rconn, redis_url, mailbox, receiver):
    with exact_served() as (live, _sandbox), httpx.Client(timeout=10) as http:
        authorise_exact(http, live, rconn)  # then Exact cannot be reached any more
    config = parse_config({
        "gateway": {"retry_attempts": 0},
        "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
        "systems": [exact_system(live.url)],
        "integrations": [{"id": "shop-exact", "source": "shop", "target": "exact", "flows": ["orders"],
                          "notify": {"urls": [mailbox.url, receiver.url], "window_seconds": 0}}],
    }, environ=SECRETS | ENV)  # fmt: skip
    deliver_orders(rconn, 6001, 6002)
    run_worker(config, redis_url, burst=True)
    run_dispatch_job(rconn, config, redis_url)
    [(subject, text)] = mailbox.texts()
    [post] = receiver.posts
    assert subject == post["title"] == "Koppel shop-exact: 2 orders failed for integration shop-exact"
    for body in (text, post["message"]):
        assert "(retries exhausted)" in body and "Records: order 6001, order 6002" in body
        assert "jorg@example.com" not in body
