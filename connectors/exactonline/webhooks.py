"""Exact Online's webhook subscriptions, as `koppel endpoints sync` manages them (workers/subscriptions.py).

What Exact does, and how sure we are ([V] read in public client code, [S] a secondary source, [U] assumed):

* `POST /api/v1/{division}/webhooks/WebhookSubscriptions {CallbackURL, Topic, Description}`, `GET` the same
  path lists them in the OData envelope (`{"d": {"results": [...]}}`), `DELETE …(guid'{ID}')` ends one
  [V picqer `WebhookSubscription.php`; a captured POST answer in public code; emeq/exact-api notes].
* There is no update: Exact's own .NET client declares the entity create/read/delete only
  (`SupportedActionsSDK(true, true, false, true)`) [V]. A subscription on the wrong URL is deleted and
  made again (`update`); deliveries in between are lost, so the plan counts it as a repair that lost some.
* One subscription per topic and division: a second one answers 500 "Data already exists" [S emeq]. So
  an existing subscription is deleted *before* its replacement is made, and a topic held by a
  subscription Koppel did not make (or cannot see: another user's of the same app) is one sentence
  naming it, not a retry.
* An app sees its own subscriptions only [S Invantive]: "other software's" are the same app's pointing
  elsewhere under another description (another Koppel, a developer's test).
* The HashCode's key is the app's webhook secret, one per app, not per subscription [V picqer
  `Authenticatable.php`]: nothing secret is sent when subscribing; the endpoint's configured secret must
  be that app secret, or the receiver refuses every notification.
* Subscribing makes Exact POST an empty body to the CallbackURL first; anything but 200/201 refuses the
  subscription [S emeq] (the receiver, handlers/exactonline.py, answers 200). Exact wants an HTTPS
  CallbackURL on the domain of the app's redirect URI [S].
* Topics: `SalesOrders`, `Accounts`, `Items` [V: the sandbox's and picqer's lists, a captured subscription];
  `StockPositions` exists too [V captured subscription], but what its `Key` names is not documented
  (public code reads it as the item's ID [S]): the stock flow stays on the Sync API's polling.
* Whether Exact ever drops a subscription whose deliveries keep failing is not documented [U]: Koppel
  remembers (Redis) what it made, so one gone missing is re-created as lost (`vanished`) and, when the
  system reconciles (`reconcile_interval_seconds`), polled for what it missed.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from connectors.contract import Subscription, Webhooks
from connectors.exactonline.client import ExactClient
from connectors.exactonline.connector import exact_client
from connectors.exactonline.endpoints import Endpoint
from connectors.exactonline.errors import ExactNotFound, ExactPermanentError, ExactResponseError, ExactUnavailable
from gateway import keys

TOPICS: dict[str, str] = {"orders": "SalesOrders", "customers": "Accounts", "products": "Items"}
"""Flow → the Exact topic whose notifications feed it (stock: none, polled; see the module's docstring)."""
DESCRIPTION_MAX = 100
"""Koppel's descriptions are cut to this length (Exact's limit is not documented; names are short)."""


class WebhookSubscriptions(Endpoint):
    path = "webhooks/WebhookSubscriptions"
    select = ("ID", "CallbackURL", "Topic", "Description", "Division")
    required = ("CallbackURL", "Topic")


def _subscription(record: dict[str, Any]) -> Subscription:
    """Exact's subscriptions have no state: one that exists is active."""
    return Subscription(id=str(record.get("ID") or ""), topic=str(record.get("Topic") or ""),
                        url=str(record.get("CallbackURL") or ""), status="active",
                        name=str(record.get("Description") or ""))  # fmt: skip


def _already_exists(exc: ExactUnavailable) -> bool:
    return exc.status == 500 and "already exists" in str(exc).lower()


class ExactWebhooks(Webhooks):
    """The subscriptions of the system's division (`settings.division`, else the authorising user's)."""

    @property
    def exact(self) -> ExactClient:
        return exact_client(self.system, self.context)

    def _known(self) -> str:
        """Redis hash "{url} {topic}" → the ID of the subscription Koppel made, per division."""
        return keys.cache(self.system.id, "exact_subscriptions", str(self.exact.division))

    # -- the contract ---------------------------------------------------------------------------------

    def topics(self, flows: Iterable[str]) -> list[str]:
        wanted = set(flows)
        return [topic for flow, topic in TOPICS.items() if flow in wanted]

    def current(self) -> list[Subscription]:
        records = self.exact.query(WebhookSubscriptions)
        if any(not isinstance(r, dict) or not r.get("ID") for r in records):
            raise ExactResponseError("GET webhooks/WebhookSubscriptions: a subscription without an ID")
        return [_subscription(r) for r in records]

    def create(self, topic: str, url: str, secret: str, name: str) -> Subscription:
        """`secret` is not sent: Exact signs with the app's webhook secret (the endpoint's secret must be it)."""
        body = {"CallbackURL": url, "Topic": topic, "Description": name[:DESCRIPTION_MAX]}
        try:
            made = self.exact.create(WebhookSubscriptions, body)
        except ExactUnavailable as exc:
            if not _already_exists(exc):
                raise
            raise ExactPermanentError(self._taken(topic)) from None
        if not made.get("ID"):
            raise ExactResponseError("POST webhooks/WebhookSubscriptions: Exact did not return the subscription's ID")
        sub = _subscription(made)
        self.context.redis.hset(self._known(), f"{url} {topic}", sub.id)
        return sub

    def _taken(self, topic: str) -> str:
        """Why a topic cannot be subscribed: which subscription holds it, if this app can see it."""
        division = self.exact.division
        holder = next((s for s in self.current() if s.topic == topic), None)
        where = (f"subscription {holder.id} → {holder.url}" + (f" ({holder.name!r})" if holder.name else "")
                 if holder is not None else "a subscription this app's user cannot see (another user's)")  # fmt: skip
        return (f"Exact Online holds one webhook subscription per topic and division, and {topic} in division "
                f"{division} is taken by {where}; delete that one in Exact (or stop the software that made it), "
                "then run `koppel endpoints sync` again")  # fmt: skip

    def update(self, subscription: Subscription, *, topic: str, url: str, secret: str, name: str) -> Subscription:
        """Exact cannot change a subscription: it is deleted first (one per topic), then made again."""
        self.delete(subscription)
        return self.create(topic, url, secret, name)

    def delete(self, subscription: Subscription) -> None:
        with suppress(ExactNotFound):  # already gone
            self.exact.delete(WebhookSubscriptions, subscription.id)
        known = self.context.redis.hgetall(self._known())
        for field, value in known.items():
            if keys.text(value) == subscription.id:
                self.context.redis.hdel(self._known(), field)

    def vanished(self, url: str, current: Iterable[Subscription]) -> set[str]:
        held = {sub.id.lower() for sub in current}
        gone = set()
        for field, value in self.context.redis.hgetall(self._known()).items():
            at, _, topic = keys.text(field).rpartition(" ")
            if at == url and keys.text(value).lower() not in held:
                gone.add(topic)
        return gone


__all__ = ["TOPICS", "ExactWebhooks", "WebhookSubscriptions"]
