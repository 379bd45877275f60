"""`ExactWebhooks` against respx: Exact's WebhookSubscriptions listed, made, deleted; a repair is a delete
then a create (Exact has no update, and one subscription per topic); a topic taken by a subscription Koppel
did not make is one sentence naming it; one Koppel made that Exact no longer holds is reported vanished."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import redis
import respx

from connectors import registry
from connectors.contract import Context, Subscription
from connectors.exactonline.client import ExactClient
from connectors.exactonline.errors import ExactRequestError, ExactUnavailable
from connectors.exactonline.ratelimit import RateLimiter
from connectors.exactonline.webhooks import ExactWebhooks
from gateway.config import System
from gateway.errors import PermanentError
from tests.exactonline_support import ExactResponses, FakeClock

R = ExactResponses
BASE = "https://start.exactonline.test"
ROOT = f"{BASE}/api/v1/123/"
PATH = "webhooks/WebhookSubscriptions"
URL = "https://koppel.example/webhooks/exact-hooks"
A, B, C = ("5f1c7a43-1d0a-4d3c-9d51-0a2b3c4d5e6" + d for d in "abc")


def record(ident: str, topic: str, url: str = URL, description: str = "") -> dict[str, object]:
    return {"ID": ident, "CallbackURL": url, "Topic": topic, "Description": description, "Division": 123}


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        yield router


@pytest.fixture
def hooks(rconn: redis.Redis) -> Iterator[ExactWebhooks]:
    clock = FakeClock()
    entry = {"id": "exact-unit", "kind": "exactonline", "settings": {"client_id": "app"},
             "credentials": {"client_secret": "env:S"}}  # fmt: skip
    system = System.model_validate(entry, context={"environ": {"S": "x"}})
    with httpx.Client() as http:
        client = ExactClient(http, base_url=BASE, division=123, sleep=clock.sleep, jitter=lambda: 0.5,
                             limiter=RateLimiter.unlimited(clock=clock, sleep=clock.sleep))  # fmt: skip
        yield ExactWebhooks(system, Context(http, rconn, cached=lambda _key, _build: client))


def test_the_exact_connector_manages_its_webhooks_for_orders_customers_and_products():
    connector = registry.get("exactonline")
    assert connector.webhooks is ExactWebhooks
    hooks = ExactWebhooks.__new__(ExactWebhooks)
    assert hooks.topics(["stock", "products", "orders", "customers"]) == ["SalesOrders", "Accounts", "Items"]
    assert hooks.topics(["stock"]) == []  # stock stays polled (the Sync API)


def test_current_lists_every_page_of_the_divisions_subscriptions(api, hooks):
    second = f"{ROOT}{PATH}?$skiptoken=guid'{A}'"
    route = api.get(PATH).mock(side_effect=[
        httpx.Response(200, json=R.page([record(A, "Accounts", description="Koppel exact-hooks: Accounts")],
                                        next_url=second)),
        httpx.Response(200, json=R.page([record(B, "Documents", url="https://other.example/hook")])),
    ])  # fmt: skip
    subs = hooks.current()
    assert subs == [Subscription(A, "Accounts", URL, "active", "Koppel exact-hooks: Accounts"),
                    Subscription(B, "Documents", "https://other.example/hook", "active", "")]  # fmt: skip
    assert route.calls[0].request.url.params["$select"] == "ID,CallbackURL,Topic,Description,Division"


def test_create_posts_url_topic_and_description_never_the_secret_and_remembers_it(api, hooks, rconn):
    route = api.post(PATH).respond(201, json=R.single(record(A, "Items", description="Koppel exact-hooks: Items")))
    made = hooks.create("Items", URL, "the-app-webhook-secret", "Koppel exact-hooks: Items")
    assert made == Subscription(A, "Items", URL, "active", "Koppel exact-hooks: Items")
    sent = route.calls[0].request.content
    assert json.loads(sent) == {"CallbackURL": URL, "Topic": "Items", "Description": "Koppel exact-hooks: Items"}
    assert b"the-app-webhook-secret" not in sent
    assert hooks.vanished(URL, [made]) == set()
    assert hooks.vanished(URL, []) == {"Items"}  # Exact no longer holds it: deliveries were lost
    assert hooks.vanished("https://elsewhere.example/webhooks/x", []) == set()


def test_update_deletes_before_it_creates_because_exact_has_one_subscription_per_topic(api, hooks):
    calls: list[str] = []
    api.delete(f"{PATH}(guid'{A}')").mock(side_effect=lambda request: calls.append("DELETE") or httpx.Response(204))
    api.post(PATH).mock(side_effect=lambda request: calls.append("POST") or httpx.Response(
        201, json=R.single(record(B, "Accounts"))))  # fmt: skip
    old = Subscription(A, "Accounts", "https://old.example/hooks", "active", "Koppel exact-hooks: Accounts")
    made = hooks.update(old, topic="Accounts", url=URL, secret="s", name="Koppel exact-hooks: Accounts")
    assert calls == ["DELETE", "POST"] and made.id == B and made.url == URL


def test_deleting_one_already_gone_is_fine_and_forgets_it(api, hooks):
    api.post(PATH).respond(201, json=R.single(record(A, "Items")))
    made = hooks.create("Items", URL, "s", "n")
    api.delete(f"{PATH}(guid'{A}')").respond(404, json=R.error("Record not found"))
    hooks.delete(made)
    assert hooks.vanished(URL, []) == set()  # deleted by Koppel: not a loss


def test_a_topic_held_by_another_subscription_is_one_sentence_naming_it(api, hooks):
    api.post(PATH).respond(500, json=R.error("Data already exists"))
    api.get(PATH).respond(200, json=R.page([record(C, "SalesOrders", url="https://erp-tool.example/in",
                                                   description="ERP tool")]))  # fmt: skip
    with pytest.raises(PermanentError) as caught:
        hooks.create("SalesOrders", URL, "s", "Koppel exact-hooks: SalesOrders")
    message = str(caught.value)
    assert "SalesOrders in division 123 is taken by subscription" in message
    assert "https://erp-tool.example/in" in message and "'ERP tool'" in message
    assert "koppel endpoints sync" in message


def test_a_duplicate_this_user_cannot_see_is_named_as_such(api, hooks):
    api.post(PATH).respond(500, json=R.error("Data already exists"))
    api.get(PATH).respond(200, json=R.page([]))
    with pytest.raises(PermanentError, match="another user's"):
        hooks.create("Accounts", URL, "s", "n")


def test_other_server_errors_stay_transient_and_refusals_permanent(api, hooks):
    api.post(PATH).respond(503, json=R.error("Service unavailable"))
    with pytest.raises(ExactUnavailable):
        hooks.create("Accounts", URL, "s", "n")
    api.post(PATH).respond(400, json=R.error("Webhook subscription refused: the CallbackURL answered 404"))
    with pytest.raises(ExactRequestError, match="CallbackURL answered 404"):
        hooks.create("Accounts", URL, "s", "n")
